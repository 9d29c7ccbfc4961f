//! The `jetsource` binary: the CLI, hosting the reference aggregates and
//! the blog's `blogposts` projection.

fn main() -> std::process::ExitCode {
    jetsource::cli::main(jetsource::reference_app())
}
