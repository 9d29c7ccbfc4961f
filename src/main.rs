//! The `jetsource` binary: the CLI, hosting the reference aggregates.

use jetsource::account::Account;
use jetsource::blog::BlogPost;
use jetsource::App;

fn main() -> std::process::ExitCode {
    jetsource::cli::main(App::new().aggregate::<BlogPost>().aggregate::<Account>())
}
