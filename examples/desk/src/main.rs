//! The desk with the whole jetsource CLI:
//!
//! ```sh
//! cargo run -p jetsource-example-desk -- run
//! cargo run -p jetsource-example-desk -- send order o1 place '{"customer":"ada","total":30}'
//! cargo run -p jetsource-example-desk -- send payment pay1 pay '{"order":"o1","amount":30}'
//! cargo run -p jetsource-example-desk -- query desk get o1
//! ```

fn main() -> std::process::ExitCode {
    jetsource::cli::main(jetsource_example_desk::app())
}
