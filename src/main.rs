//! The `jetsource` binary: the CLI, hosting the reference aggregates and
//! the blog's `blogposts` projection.

// Every command allocates small, short-lived buffers (headers, subjects,
// replies) across threads; mimalloc serves those faster than glibc's
// malloc, which spent time consolidating and unlinking chunks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    jetsource::cli::main(jetsource::reference_app())
}
