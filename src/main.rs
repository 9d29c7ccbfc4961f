//! The `jetsource` binary: the CLI, hosting the reference aggregates and
//! the blog's `blogposts` projection.

use jetsource::account::Account;
use jetsource::blog::BlogPost;
use jetsource::blog_projection::BlogPosts;
use jetsource::App;

fn main() -> std::process::ExitCode {
    jetsource::cli::main(
        App::new()
            .aggregate::<BlogPost>()
            .aggregate::<Account>()
            .projector(BlogPosts::default),
    )
}
