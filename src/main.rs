//! The `jetsource` binary: the CLI, hosting the reference blog aggregate
//! and its `blogposts` projection.

use jetsource::blog::BlogPost;
use jetsource::blog_projection::BlogPosts;
use jetsource::App;

fn main() -> std::process::ExitCode {
    jetsource::cli::main(
        App::new()
            .aggregate::<BlogPost>()
            .projector(BlogPosts::default),
    )
}
