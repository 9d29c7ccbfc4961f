//! The desk with the whole jetsource CLI, hosting both aggregates, the
//! `desk` and `orders` projections and the `settlement`:
//!
//! ```sh
//! cargo run -p jetsource-example-desk -- run
//! cargo run -p jetsource-example-desk -- send order o1 place '{"customer":"ada","total":30}'
//! cargo run -p jetsource-example-desk -- send payment pay1 pay '{"order":"o1","amount":30}'
//! cargo run -p jetsource-example-desk -- query orders get o1     # confirmed by the settlement
//! cargo run -p jetsource-example-desk -- query desk totals
//! ```

fn main() -> std::process::ExitCode {
    jetsource::cli::main(jetsource_example_desk::app())
}
