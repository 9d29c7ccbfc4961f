//! The desk with the whole jetsource CLI, hosting both aggregates, the
//! `desk` and `orders` projections and the `settlement`, and a subcommand
//! of its own beside jetsource's, `owing`:
//!
//! ```sh
//! cargo run -p jetsource-example-desk -- run
//! cargo run -p jetsource-example-desk -- send order o1 place '{"customer":"ada","total":30}'
//! cargo run -p jetsource-example-desk -- owing                  # o1, until it is paid
//! cargo run -p jetsource-example-desk -- send payment pay1 pay '{"order":"o1","amount":30}'
//! cargo run -p jetsource-example-desk -- query orders get o1     # confirmed by the settlement
//! cargo run -p jetsource-example-desk -- query desk totals
//! ```

use jetsource::clap;
use jetsource::cli::{self, Context};
use jetsource::client::{After, QueryClient};
use jetsource::schemas::page::Page;
use jetsource_example_desk::desk::{Desk, OrderView, Standing};
use std::process::ExitCode;

/// The desk's own subcommands.
#[derive(Debug, clap::Subcommand)]
enum DeskCommand {
    /// List the orders still owing, one JSON object per line: id, total, paid.
    Owing {
        /// NATS URL; default: as for `send`.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
    },
}

fn main() -> ExitCode {
    cli::main_with(jetsource_example_desk::app(), run)
}

async fn run(command: DeskCommand, context: Context) -> ExitCode {
    let DeskCommand::Owing { nats_url } = command;
    let nats =
        match cli::client::client_connection(&context.config, nats_url.as_deref(), "owing").await {
            Ok(nats) => nats,
            Err(code) => return code,
        };
    let namespace = match context.config.namespace() {
        Ok(namespace) => namespace,
        Err(e) => {
            eprintln!("owing: {e}");
            return ExitCode::from(2);
        }
    };
    let queries = QueryClient::new(nats).with_namespace(namespace);
    // Every page of the desk's list, in order id order.
    let mut after: Option<String> = None;
    loop {
        let body = serde_json::json!({ "limit": 100, "after": after });
        let page: Page<OrderView> = match queries
            .ask(Desk::NAME, &["list"], body, &After::nothing())
            .await
        {
            Ok(page) => page,
            Err(e) => {
                eprintln!("owing: {e}");
                return ExitCode::from(3);
            }
        };
        for order in page.items.iter().filter(|o| o.standing == Standing::Owing) {
            println!(
                "{}",
                serde_json::json!({"id": order.id, "total": order.total, "paid": order.paid})
            );
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return ExitCode::SUCCESS,
        }
    }
}
