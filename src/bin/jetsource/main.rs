//! The `jetsource` binary: the CLI hosting the reference application (the
//! blog post and the bank account, the `blogposts` projection,
//! `blogposts_pg` when a PostgreSQL database is configured, and the
//! scheduled-publishing process manager), with
//! the reference application's own subcommands, `demo` and `bench`, beside
//! jetsource's.

mod demo;

use jetsource::cli::{self, Context};
use jetsource::App;
use jetsource_reference::account::Account;
use jetsource_reference::blog::BlogPost;
use jetsource_reference::blogposts::BlogPosts;
use jetsource_reference::blogposts_pg::BlogPostsPg;
use jetsource_reference::payments::Payments;
use jetsource_reference::publishing::ScheduledPublishing;
use std::process::ExitCode;

/// The reference application's own subcommands.
#[derive(Debug, clap::Subcommand)]
enum Reference {
    /// Measure jetsource against the bare JetStream path it is built on, and print a table.
    Bench {
        /// A short run (under a minute) with smaller scales.
        #[arg(long)]
        quick: bool,
        /// One JSON object per figure and line instead of a table.
        #[arg(long)]
        json: bool,
        /// Use this nats-server instead of starting one in a temp folder.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// Concurrent client tasks.
        #[arg(long, value_name = "N", default_value_t = 64)]
        clients: usize,
        /// Aggregates of the round-trip figures.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        aggregates: u64,
        /// Run one figure, and the baseline it is compared with.
        #[arg(long, value_name = "FIGURE", value_parser = clap::builder::PossibleValuesParser::new(jetsource_bench::FIGURES))]
        only: Option<String>,
    },
    /// Play the Rewind post's story end to end and print every step.
    Demo {
        /// NATS URL; default: as for send, else an embedded nats-server.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let app = App::new()
        .aggregate::<BlogPost>()
        .aggregate::<Account>()
        .documents(|| BlogPosts)
        .postgres_projector(|| BlogPostsPg)
        .process_manager(|| ScheduledPublishing)
        .process_manager(|| Payments);
    cli::main_with(app, run)
}

async fn run(command: Reference, context: Context) -> ExitCode {
    let config = context.config;
    match command {
        Reference::Bench {
            quick,
            json,
            nats_url,
            clients,
            aggregates,
            only,
        } => {
            let runtime_config = match config.runtime() {
                Ok(runtime_config) => runtime_config,
                Err(e) => {
                    eprintln!("jetsource bench: {e}");
                    return ExitCode::from(2);
                }
            };
            let binary = match std::env::current_exe() {
                Ok(binary) => binary,
                Err(e) => {
                    eprintln!(
                        "jetsource bench: cannot find this binary to start `jetsource run`: {e}"
                    );
                    return ExitCode::from(2);
                }
            };
            let options = jetsource_bench::BenchOptions {
                quick,
                json,
                nats_url,
                clients,
                aggregates,
                only,
                binary,
            };
            match jetsource_bench::run(&options, runtime_config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == jetsource_bench::BenchErrorKind::Usage => {
                    eprintln!("jetsource bench: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("jetsource bench: {e}");
                    ExitCode::from(3)
                }
            }
        }
        Reference::Demo { nats_url } => {
            let mut out = std::io::stdout();
            match demo::run(&config, nats_url.as_deref(), &mut out).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("jetsource demo: {e}");
                    ExitCode::from(3)
                }
            }
        }
    }
}
