//! The names jetsource gives things in PostgreSQL: a schema per
//! generation, the tables of its checkpoint, and the table naming the
//! generation served.

use jetsource_projector::{ProjectionError, ProjectionErrorKind};
use jetsource_schemas::error::Error;

/// The longest identifier PostgreSQL keeps whole (`NAMEDATALEN - 1`).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The table, in the `public` schema, naming the generation each
/// projection serves.
pub const PROJECTIONS_TABLE: &str = "jetsource_projections";

/// In a generation's schema: the last stream sequence applied per stream
/// and the parked events skipped at or below it.
pub const CHECKPOINT_TABLE: &str = "jetsource_checkpoint";

/// In a generation's schema: one row, the lease token of the instance
/// that wrote the checkpoint last (a stale one may not write after it).
pub const HOLDER_TABLE: &str = "jetsource_holder";

/// In a generation's schema: the migrations run, by their index.
pub const MIGRATIONS_TABLE: &str = "jetsource_migrations";

/// The schema of generation `generation` of projection `name`:
/// `<name>_g<generation>`, refused ([`ProjectionErrorKind::BadProjector`])
/// when longer than an identifier may be.
pub fn schema(name: &str, generation: u64) -> Result<String, ProjectionError> {
    let schema = format!("{name}_g{generation}");
    if schema.len() > MAX_IDENTIFIER_BYTES {
        return Err(Error::new(
            ProjectionErrorKind::BadProjector,
            format!(
                "schema {schema:?} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES} bytes: \
                 shorten the projection's name"
            ),
        ));
    }
    Ok(schema)
}

/// `name` as a quoted identifier: projection names may hold `-` and upper
/// case, which an unquoted identifier would refuse or fold.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_quoted_and_bounded() {
        assert_eq!(
            schema("blog-posts", 3).map(|s| quote(&s)).ok(),
            Some("\"blog-posts_g3\"".into())
        );
        let long = "p".repeat(60);
        assert_eq!(
            schema(&long, 12).map_err(|e| e.kind()).err(),
            Some(ProjectionErrorKind::BadProjector)
        );
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
