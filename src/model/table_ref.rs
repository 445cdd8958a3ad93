//! A table's identity: its schema and name as the catalog spells them, parsed once from what a
//! user writes (`--table`, the config file, `TABLE.COLUMN` flags) and carried typed through
//! plans, the manifest, file paths and BigQuery names. Nothing recovers a table from a joined
//! `schema.table` string: a dot may be part of either name.
//!
//! Three spellings, each with one function:
//! - [`Display`](std::fmt::Display): `schema.name` with each part quoted as Postgres needs it
//!   (`"sales.eu".orders`, `public."Events"`), which [`TableRef::parse`] reads back. It is the
//!   name messages and the manifest use; plain lower-case names read as before (`public.events`).
//! - [`TableRef::directory`]: the run's directory for the table, built from `[A-Za-z0-9_-]` and
//!   `+XX` escapes only, so it is the same object name on every store (see `docs/manifest.md`).
//! - [`TableRef::bigquery_name`]: the BigQuery table name (`events`, `audit__events`).

use serde::{Deserialize, Serialize};

use crate::model::types::{bigquery_identifier, quote_ident, NameAlphabet};

/// The schema an unqualified table name means, whatever the server's `search_path`.
pub const DEFAULT_SCHEMA: &str = "public";

/// The longest directory name every store takes (a path component on Linux and macOS).
pub const MAX_DIRECTORY_BYTES: usize = 255;

/// One table: schema and name exactly as the catalog spells them (no quoting, no case folding).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

/// Text that is not `[schema.]table` (or `[[schema.]table.]column`), naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a table name: {problem}")]
pub struct ParseTableRefError {
    pub text: String,
    pub problem: &'static str,
}

/// One dot-separated part of a name as written: its text (unquoted, `""` as `"`) and whether it
/// was quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePart {
    pub text: String,
    pub quoted: bool,
}

impl NamePart {
    /// The part as the catalog spells it: a quoted part as written, an unquoted one lower-cased
    /// (ASCII only, as Postgres folds identifiers).
    pub fn folded(&self) -> String {
        match self.quoted {
            true => self.text.clone(),
            false => self.text.to_ascii_lowercase(),
        }
    }
}

/// The dot-separated parts of `text`, Postgres-style: a dot inside `"…"` belongs to the part,
/// `""` inside quotes is one `"`, blanks around the whole are ignored.
///
/// # Errors
/// [`ParseTableRefError`] for an unclosed quote, an empty part, or text after a closing quote.
pub fn name_parts(text: &str) -> Result<Vec<NamePart>, ParseTableRefError> {
    let error = |problem| ParseTableRefError { text: text.to_string(), problem };
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = NamePart { text: String::new(), quoted: false };
        if chars.next_if_eq(&'"').is_some() {
            part.quoted = true;
            loop {
                match chars.next() {
                    Some('"') if chars.next_if_eq(&'"').is_some() => part.text.push('"'),
                    Some('"') => break,
                    Some(c) => part.text.push(c),
                    None => return Err(error("a quote is not closed")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != '.' && *c != '"') {
                part.text.push(c);
            }
        }
        if part.text.is_empty() {
            return Err(error("a part is empty"));
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => return Err(error("a quote opens or closes inside a part; quote the whole part")),
        }
    }
}

impl TableRef {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self { schema: schema.into(), name: name.into() }
    }

    /// `[schema.]table` by Postgres' rules: a `"quoted"` part as written, an unquoted part
    /// lower-cased; no schema means [`DEFAULT_SCHEMA`].
    ///
    /// # Errors
    /// [`ParseTableRefError`] for malformed text or more than two parts.
    pub fn parse(text: &str) -> Result<Self, ParseTableRefError> {
        let (schema, name) = Self::parse_partial(text)?;
        Ok(Self { schema: schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_string()), name })
    }

    /// `[schema.]table` as [`Self::parse`], keeping whether a schema was written.
    ///
    /// # Errors
    /// As [`Self::parse`].
    pub fn parse_partial(text: &str) -> Result<(Option<String>, String), ParseTableRefError> {
        let mut parts = name_parts(text)?;
        let name = parts.pop().expect("name_parts gives one part or more").folded();
        match parts.as_slice() {
            [] => Ok((None, name)),
            [schema] => Ok((Some(schema.folded()), name)),
            _ => Err(ParseTableRefError {
                text: text.to_string(),
                problem: "more than two parts (write SCHEMA.TABLE and quote a part holding a dot)",
            }),
        }
    }

    /// `"schema"."name"`, for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// The name a BigQuery table gets: the table's own name in [`DEFAULT_SCHEMA`], else
    /// `schema__name`, then made BigQuery-safe (see [`bigquery_identifier`]). Different tables
    /// may get one name (`"t-1"` and `t_1`); planning refuses such pairs.
    pub fn bigquery_name(&self) -> String {
        match self.schema == DEFAULT_SCHEMA {
            true => bigquery_identifier(&self.name),
            false => bigquery_identifier(&format!("{}__{}", self.schema, self.name)),
        }
    }

    /// The table's directory in a run: `schema.name`, each part with every byte outside
    /// `[A-Za-z0-9_-]` written `+XX` (upper-case hex of its UTF-8 bytes). Distinct tables get
    /// distinct directories, and no store encodes them again (local files, object_store's
    /// paths and GCS object names are all this text). A query's directory is its name, which
    /// holds no `.`, so it never meets a table's.
    pub fn directory(&self) -> String {
        format!("{}.{}", escape_path_part(&self.schema), escape_path_part(&self.name))
    }

    /// Whether [`Self::directory`] fits in one path component on every store.
    pub fn directory_fits(&self) -> bool {
        self.directory().len() <= MAX_DIRECTORY_BYTES
    }

    /// How a manifest written before tables were recorded typed (no `table` field) names one:
    /// its `name` was `schema.table` joined unquoted, and that version read the table it got by
    /// cutting at the first dot, so the same cut names the table those files came from. Only for
    /// reading such manifests; `None` for a query's name (no dot).
    pub fn from_untyped_manifest_name(name: &str) -> Option<Self> {
        let dot = name.find('.')?;
        Some(Self::new(&name[..dot], &name[dot + 1..]))
    }

    /// Whether `key` (an option's table, as [`crate::model::manifest::TableManifest::is_named`]
    /// reads it) designates this table: `schema.table` in full, or a bare `table` of any schema.
    pub fn is_named_by(&self, key: &str) -> bool {
        match Self::parse_partial(key) {
            Ok((schema, name)) => name == self.name && schema.is_none_or(|s| s == self.schema),
            Err(_) => false,
        }
    }
}

/// The one spelling of a table written `[schema.]table` (folded) as options key it: only the
/// table for [`DEFAULT_SCHEMA`] or no schema (a bare name matches that table in any schema),
/// else the [`TableRef`] displayed.
pub fn table_key(schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(schema) if schema != DEFAULT_SCHEMA => TableRef::new(schema, table).to_string(),
        _ => display_ident(table),
    }
}

/// `text` cut at its first `separator` outside `"…"`, so a quoted name may hold it
/// (`"a=b".t=target`); `None` without one.
pub fn split_outside_quotes(text: &str, separator: char) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (at, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => return Some((&text[..at], &text[at + c.len_utf8()..])),
            _ => {}
        }
    }
    None
}

/// `text` with bytes outside `[A-Za-z0-9_-]` as `+XX` (upper-case hex): one path part that no
/// store encodes again, distinct for distinct texts.
pub fn escape_path_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if NameAlphabet::ID.allows(c) {
            out.push(c);
        } else {
            let mut buffer = [0; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("+{byte:02X}"));
            }
        }
    }
    out
}

/// One identifier as Postgres needs it written: bare when it reads back as itself (a lower-case
/// letter or `_`, then lower-case letters, digits, `_` and `$`), else quoted.
pub fn display_ident(name: &str) -> String {
    let mut chars = name.chars();
    let bare = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    match bare {
        true => name.to_string(),
        false => quote_ident(name),
    }
}

impl std::fmt::Display for TableRef {
    /// `schema.name`, each part quoted when it must be (see [`display_ident`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", display_ident(&self.schema), display_ident(&self.name))
    }
}

impl std::str::FromStr for TableRef {
    type Err = ParseTableRefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(schema: &str, name: &str) -> TableRef {
        TableRef::new(schema, name)
    }

    #[test]
    fn parse_follows_postgres_rules_for_quotes_and_case() {
        assert_eq!(TableRef::parse("Audit.Events").unwrap(), t("audit", "events"));
        assert_eq!(TableRef::parse("events").unwrap(), t("public", "events"));
        assert_eq!(TableRef::parse(" EVENTS ").unwrap(), t("public", "events"));
        assert_eq!(TableRef::parse("\"sales.eu\".orders").unwrap(), t("sales.eu", "orders"));
        assert_eq!(TableRef::parse("sales.\"eu.orders\"").unwrap(), t("sales", "eu.orders"));
        assert_eq!(TableRef::parse("\"My\"\"Schema\".\"t.1\"").unwrap(), t("My\"Schema", "t.1"));
        assert_eq!(TableRef::parse("\"Mixed Case\".\"Ünï Table\"").unwrap(), t("Mixed Case", "Ünï Table"));
        assert_eq!(TableRef::parse("Été.Ünï").unwrap(), t("Été", "Ünï"), "only ASCII is folded, as Postgres does");
        assert_eq!(TableRef::parse("t-1").unwrap(), t("public", "t-1"));
        assert_eq!(TableRef::parse("\"a/b\"").unwrap(), t("public", "a/b"));
        for bad in ["", "a.", ".a", "a..b", "a.b.c", "\"a", "a\"b\"", "\"a\"b", "\"\"", "\"a\".\"\""] {
            assert!(TableRef::parse(bad).is_err(), "{bad}");
        }
        let error = TableRef::parse("sales.eu.orders").unwrap_err();
        assert_eq!(
            error.to_string(),
            "`sales.eu.orders` is not a table name: more than two parts (write SCHEMA.TABLE and quote a part holding a dot)"
        );
    }

    #[test]
    fn display_quotes_only_what_postgres_would_read_otherwise() {
        assert_eq!(t("public", "events").to_string(), "public.events");
        assert_eq!(t("sales.eu", "orders").to_string(), "\"sales.eu\".orders");
        assert_eq!(t("sales", "eu.orders").to_string(), "sales.\"eu.orders\"");
        assert_eq!(t("public", "Events").to_string(), "public.\"Events\"");
        assert_eq!(t("a\"b", "x y").to_string(), "\"a\"\"b\".\"x y\"");
        assert_eq!(t("s", "t$1_").to_string(), "s.t$1_");
        assert_eq!(t("s", "1t").to_string(), "s.\"1t\"");
        assert_eq!(t("s", "é").to_string(), "s.\"é\"");
        assert_eq!(t("s", "t").quoted(), "\"s\".\"t\"");
    }

    #[test]
    fn directories_are_distinct_and_need_no_store_encoding() {
        assert_eq!(t("public", "events").directory(), "public.events");
        assert_eq!(t("sales.eu", "orders").directory(), "sales+2Eeu.orders");
        assert_eq!(t("sales", "eu.orders").directory(), "sales.eu+2Eorders");
        assert_eq!(t("public", "a/b").directory(), "public.a+2Fb");
        assert_eq!(t("public", "..").directory(), "public.+2E+2E");
        assert_eq!(t("public", "a\\b").directory(), "public.a+5Cb");
        assert_eq!(t("public", "a+2Fb").directory(), "public.a+2B2Fb");
        assert_eq!(t("public", "é %\"").directory(), "public.+C3+A9+20+25+22");
        assert_eq!(t("Sales", "t-1_x").directory(), "Sales.t-1_x");
        assert!(t(&"é".repeat(31), &"é".repeat(31)).directory().len() > MAX_DIRECTORY_BYTES);
        assert!(!t(&"é".repeat(31), &"é".repeat(31)).directory_fits());
        assert!(t(&"s".repeat(63), &"t".repeat(63)).directory_fits());
    }

    #[test]
    fn bigquery_names_follow_one_rule() {
        assert_eq!(t("public", "events").bigquery_name(), "events");
        assert_eq!(t("audit", "log-2024").bigquery_name(), "audit__log_2024");
        assert_eq!(t("sales.eu", "orders").bigquery_name(), "sales_eu__orders");
        assert_eq!(t("sales", "eu.orders").bigquery_name(), "sales__eu_orders");
        assert_eq!(t("public", "t-1").bigquery_name(), t("public", "t_1").bigquery_name());
        assert_eq!(t("audit", "events").bigquery_name(), t("public", "audit__events").bigquery_name());
        assert_eq!(t("public", "_PARTITIONTIME").bigquery_name(), "_PARTITIONTIME");
    }

    #[test]
    fn options_name_a_table_in_full_or_by_its_bare_name() {
        let table = t("sales.eu", "orders");
        assert!(table.is_named_by("\"sales.eu\".orders"));
        assert!(table.is_named_by("orders"));
        assert!(!table.is_named_by("sales.eu.orders"));
        assert!(!table.is_named_by("sales.\"eu.orders\""));
        assert!(!t("public", "Events").is_named_by("Events"));
        assert!(t("public", "Events").is_named_by("\"Events\""));
    }

    #[test]
    fn separators_inside_quotes_belong_to_the_name() {
        assert_eq!(split_outside_quotes("\"a=b\".t=x=y", '='), Some(("\"a=b\".t", "x=y")));
        assert_eq!(split_outside_quotes("\"a\"\"=\".t=x", '='), Some(("\"a\"\"=\".t", "x")));
        assert_eq!(split_outside_quotes("\"a,b\".c", ','), None);
    }

    #[test]
    fn untyped_manifest_names_are_cut_where_their_exporter_cut_them() {
        assert_eq!(TableRef::from_untyped_manifest_name("public.events"), Some(t("public", "events")));
        assert_eq!(TableRef::from_untyped_manifest_name("s.Odd \"Q\" T"), Some(t("s", "Odd \"Q\" T")));
        assert_eq!(TableRef::from_untyped_manifest_name("recent"), None);
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_][a-z0-9_$]{0,8}",
            "[ -~]{1,12}",
            "\\PC{1,8}",
            Just("..".to_string()),
            Just("a.b".to_string()),
            Just("\"".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn display_parses_back_to_the_same_table(schema in name(), table in name()) {
            let original = TableRef::new(schema, table);
            prop_assert_eq!(TableRef::parse(&original.to_string()).unwrap(), original);
        }

        #[test]
        fn directories_are_injective_and_store_safe(a in (name(), name()), b in (name(), name())) {
            let (a, b) = (TableRef::new(a.0, a.1), TableRef::new(b.0, b.1));
            prop_assert_eq!(a.directory() == b.directory(), a == b);
            prop_assert!(a.directory().chars().all(|c| NameAlphabet::ID.allows(c) || c == '.' || c == '+'));
            prop_assert_eq!(a.directory().matches('.').count(), 1);
        }
    }
}
