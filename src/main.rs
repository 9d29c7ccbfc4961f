//! The `jetsource` binary: the CLI, hosting the reference blog aggregate.

use jetsource::blog::BlogPost;
use jetsource::App;

fn main() -> std::process::ExitCode {
    jetsource::cli::main(App::new().aggregate::<BlogPost>())
}
