//! Reading typed values out of the spanned TOML tree, collecting every error.
//!
//! Each reader returns `Option<T>`: `None` means "absent or invalid", and when invalid a
//! diagnostic has already been pushed into [`Cx`]. Callers read every field of a table
//! before combining the results, so one bad field never hides another.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::Diagnostic;
use crate::duration::parse_duration;
use crate::schema::Command;
use crate::secret::{Secret, SecretUse, StringOrSecret};

pub(crate) type Node<'i> = Spanned<DeValue<'i>>;

/// Decoding context: the diagnostics found so far and what paths are relative to.
pub(crate) struct Cx {
    pub diagnostics: Vec<Diagnostic>,
    pub plan_dir: PathBuf,
    /// Every secret reference decoded, for [`crate::check_secrets`].
    pub secrets: Vec<SecretUse>,
}

impl Cx {
    pub fn new(plan_dir: PathBuf) -> Self {
        Cx {
            diagnostics: Vec::new(),
            plan_dir,
            secrets: Vec::new(),
        }
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    pub fn error(&mut self, path: &FieldPath, span: Range<usize>, message: impl Into<String>) {
        self.push(Diagnostic::error(path.as_str(), span, message));
    }

    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.plan_dir.join(path)
        }
    }
}

/// A dotted field path such as `resources.orders-db.at.dr.password` or
/// `sites.dr.checks[0].timeout`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let key = if bare {
            key.to_string()
        } else {
            format!("{key:?}")
        };
        if self.0.is_empty() {
            FieldPath(key)
        } else {
            FieldPath(format!("{}.{key}", self.0))
        }
    }

    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last key of the path (`password` for `resources.db.at.dr.password`).
    pub fn last_key(&self) -> &str {
        let last = self.0.rsplit('.').next().unwrap_or_default();
        last.split('[').next().unwrap_or_default()
    }
}

/// Span of every key and value in the document by field path, so later checks can point
/// at what they complain about without the typed plan carrying spans everywhere.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpanIndex {
    entries: HashMap<String, NodeSpans>,
}

#[derive(Clone, Debug)]
struct NodeSpans {
    key: Option<Range<usize>>,
    value: Range<usize>,
}

impl SpanIndex {
    pub fn build(root: &Node<'_>) -> Self {
        let mut index = SpanIndex::default();
        index.visit(root, &FieldPath::root(), None);
        index
    }

    fn visit(&mut self, node: &Node<'_>, path: &FieldPath, key: Option<Range<usize>>) {
        self.entries.insert(
            path.as_str().to_string(),
            NodeSpans {
                key,
                value: node.span(),
            },
        );
        match node.get_ref() {
            DeValue::Table(table) => {
                for (key, value) in table.iter() {
                    self.visit(value, &path.key(key.get_ref()), Some(key.span()));
                }
            }
            DeValue::Array(array) => {
                for (position, value) in array.iter().enumerate() {
                    self.visit(value, &path.index(position), None);
                }
            }
            _ => {}
        }
    }

    /// Span of the value at `path`.
    pub fn value(&self, path: &str) -> Option<Range<usize>> {
        self.entries.get(path).map(|spans| spans.value.clone())
    }

    /// Span of the key at `path`, or of its value for array items and the root.
    pub fn key(&self, path: &str) -> Option<Range<usize>> {
        self.entries
            .get(path)
            .map(|spans| spans.key.clone().unwrap_or_else(|| spans.value.clone()))
    }

    /// Span of the key at `path`, falling back to the closest ancestor that exists, then
    /// to the start of the file.
    pub fn key_or_parent(&self, path: &str) -> Range<usize> {
        let mut current = path;
        loop {
            if let Some(span) = self.key(current) {
                return span;
            }
            match current.rfind(['.', '[']) {
                Some(cut) => current = &current[..cut],
                None => return 0..0,
            }
        }
    }
}

fn describe_type(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(crate) fn wrong_type(node: &Node<'_>, path: &FieldPath, expected: &str, cx: &mut Cx) {
    cx.error(
        path,
        node.span(),
        format!(
            "`{}` must be {expected}, found {}",
            path.last_key(),
            describe_type(node.get_ref())
        ),
    );
}

/// Types that can be read from one spanned TOML value.
pub(crate) trait FromToml: Sized {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self>;
}

impl FromToml for String {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        match node.get_ref().as_str() {
            Some(text) => Some(text.to_string()),
            None => {
                wrong_type(node, path, "a string", cx);
                None
            }
        }
    }
}

/// A string that must not be empty: names, URLs, addresses.
#[derive(Clone, Debug)]
pub(crate) struct NonEmpty(pub String);

impl FromToml for NonEmpty {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        let text = String::from_toml(node, path, cx)?;
        if text.trim().is_empty() {
            cx.error(
                path,
                node.span(),
                format!("`{}` cannot be empty", path.last_key()),
            );
            return None;
        }
        Some(NonEmpty(text))
    }
}

impl FromToml for bool {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        match node.get_ref().as_bool() {
            Some(value) => Some(value),
            None => {
                wrong_type(node, path, "`true` or `false`", cx);
                None
            }
        }
    }
}

fn integer<T: TryFrom<i128>>(
    node: &Node<'_>,
    path: &FieldPath,
    cx: &mut Cx,
    range: &str,
) -> Option<T> {
    let Some(integer) = node.get_ref().as_integer() else {
        wrong_type(node, path, &format!("an integer {range}"), cx);
        return None;
    };
    let value = i128::from_str_radix(integer.as_str(), integer.radix()).ok();
    match value.and_then(|value| T::try_from(value).ok()) {
        Some(value) => Some(value),
        None => {
            cx.error(
                path,
                node.span(),
                format!("`{}` must be an integer {range}", path.last_key()),
            );
            None
        }
    }
}

impl FromToml for u16 {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        integer(node, path, cx, "from 0 to 65535")
    }
}

impl FromToml for u32 {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        integer(node, path, cx, "from 0 to 4294967295")
    }
}

impl FromToml for Duration {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        let help =
            "write durations as strings such as \"500ms\", \"30s\", \"15m\", \"1h30m\" or \"7d\"";
        let Some(text) = node.get_ref().as_str() else {
            cx.push(
                Diagnostic::error(
                    path.as_str(),
                    node.span(),
                    format!(
                        "`{}` must be a duration string, found {}",
                        path.last_key(),
                        describe_type(node.get_ref())
                    ),
                )
                .with_help(help),
            );
            return None;
        };
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                cx.push(
                    Diagnostic::error(
                        path.as_str(),
                        node.span(),
                        format!(
                            "invalid duration `{text}` for `{}`: {error}",
                            path.last_key()
                        ),
                    )
                    .with_help(help),
                );
                None
            }
        }
    }
}

impl FromToml for PathBuf {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        let NonEmpty(text) = NonEmpty::from_toml(node, path, cx)?;
        Some(cx.resolve_path(Path::new(&text)))
    }
}

impl<T: FromToml> FromToml for Vec<T> {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        let Some(array) = node.get_ref().as_array() else {
            wrong_type(node, path, "an array", cx);
            return None;
        };
        let items: Vec<Option<T>> = array
            .iter()
            .enumerate()
            .map(|(position, item)| T::from_toml(item, &path.index(position), cx))
            .collect();
        items.into_iter().collect()
    }
}

impl<T: FromToml> FromToml for IndexMap<String, T> {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        let Some(table) = node.get_ref().as_table() else {
            wrong_type(node, path, "a table", cx);
            return None;
        };
        let mut map = IndexMap::new();
        let mut complete = true;
        for (key, value) in table.iter() {
            match T::from_toml(value, &path.key(key.get_ref()), cx) {
                Some(decoded) => {
                    map.insert(key.get_ref().to_string(), decoded);
                }
                None => complete = false,
            }
        }
        complete.then_some(map)
    }
}

impl<T: FromToml> FromToml for Spanned<T> {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        T::from_toml(node, path, cx).map(|value| Spanned::new(node.span(), value))
    }
}

impl FromToml for Command {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        let help = "write a command as an array of arguments, e.g. [\"systemctl\", \"start\", \"app\"]; use [\"sh\", \"-c\", \"...\"] for a shell";
        if !node.get_ref().is_array() {
            cx.push(
                Diagnostic::error(
                    path.as_str(),
                    node.span(),
                    format!(
                        "`{}` must be a command (an array of strings), found {}",
                        path.last_key(),
                        describe_type(node.get_ref())
                    ),
                )
                .with_help(help),
            );
            return None;
        }
        let argv: Vec<String> = Vec::from_toml(node, path, cx)?;
        match argv.first() {
            None => {
                cx.push(
                    Diagnostic::error(path.as_str(), node.span(), "a command cannot be empty")
                        .with_help(help),
                );
                None
            }
            Some(program) if program.trim().is_empty() => {
                cx.push(Diagnostic::error(
                    path.index(0).as_str(),
                    node.span(),
                    "the program name of a command cannot be empty",
                ));
                None
            }
            Some(_) => Some(Command::new(argv)),
        }
    }
}

/// A list of commands, written either as one argv (`["a", "b"]`) or as a list of argvs
/// (`[["a"], ["b"]]`).
pub(crate) struct Commands(pub Vec<Command>);

impl FromToml for Commands {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        let single_argv = node
            .get_ref()
            .as_array()
            .and_then(|array| array.iter().next())
            .is_some_and(|first| first.get_ref().is_str());
        if single_argv {
            Command::from_toml(node, path, cx).map(|command| Commands(vec![command]))
        } else {
            Vec::<Command>::from_toml(node, path, cx).map(Commands)
        }
    }
}

impl FromToml for Secret {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        let secret = read_secret(node, path, cx)?;
        cx.secrets.push(SecretUse {
            path: path.as_str().to_string(),
            span: node.span(),
            secret: secret.clone(),
        });
        Some(secret)
    }
}

/// An environment variable name to suggest for a secret written in clear.
fn suggested_variable(path: &FieldPath) -> String {
    let skipped = [
        "resources",
        "sites",
        "at",
        "repository",
        "inventory",
        "notify",
        "traffic",
    ];
    let name: String = path
        .as_str()
        .split(['.', '['])
        .filter(|segment| !segment.is_empty() && !skipped.contains(segment))
        .filter(|segment| !segment.ends_with(']'))
        .collect::<Vec<_>>()
        .join("_");
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "SECRET".to_string()
    } else {
        name
    }
}

fn read_secret(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Secret> {
    let how = format!(
        "write `{} = {{ env = \"{}\" }}` to read it from an environment variable, or `{{ file = \"PATH\" }}` to read it from a file",
        path.last_key(),
        suggested_variable(path)
    );
    let Some(table) = node.get_ref().as_table() else {
        let found = if node.get_ref().is_str() {
            "a plain string: secrets are never written in clear in the plan".to_string()
        } else {
            describe_type(node.get_ref()).to_string()
        };
        cx.push(
            Diagnostic::error(
                path.as_str(),
                node.span(),
                format!(
                    "`{}` must be a secret reference, found {found}",
                    path.last_key()
                ),
            )
            .with_help(how),
        );
        return None;
    };
    let mut fields = Fields::new(table, node.span(), path.clone());
    let env = fields.optional::<NonEmpty>("env", cx);
    let file = fields.optional::<PathBuf>("file", cx);
    let both = fields.has("env") && fields.has("file");
    let neither = !fields.has("env") && !fields.has("file");
    fields.finish(cx);
    if both {
        cx.push(
            Diagnostic::error(
                path.as_str(),
                node.span(),
                "a secret has either `env` or `file`, not both",
            )
            .with_help(how),
        );
        return None;
    }
    if neither {
        cx.push(
            Diagnostic::error(
                path.as_str(),
                node.span(),
                format!("`{}` must be a secret reference", path.last_key()),
            )
            .with_help(how),
        );
        return None;
    }
    match (env, file) {
        (Some(NonEmpty(name)), None) => Some(Secret::Env(name)),
        (None, Some(file)) => Some(Secret::File(file)),
        _ => None,
    }
}

impl FromToml for StringOrSecret {
    fn from_toml(node: &Node<'_>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        match node.get_ref() {
            DeValue::String(text) => Some(StringOrSecret::Plain(text.to_string())),
            DeValue::Table(_) => Secret::from_toml(node, path, cx).map(StringOrSecret::Secret),
            other => {
                cx.error(
                    path,
                    node.span(),
                    format!(
                        "`{}` must be a string or a secret reference, found {}",
                        path.last_key(),
                        describe_type(other)
                    ),
                );
                None
            }
        }
    }
}

/// Declares a string enum readable from the plan, with its accepted spellings.
macro_rules! plan_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in the plan.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::read::FromToml for $name {
            fn from_toml(
                node: &$crate::read::Node<'_>,
                path: &$crate::read::FieldPath,
                cx: &mut $crate::read::Cx,
            ) -> Option<Self> {
                let text = String::from_toml(node, path, cx)?;
                match text.as_str() {
                    $($text => Some($name::$variant),)+
                    _ => {
                        cx.push($crate::read::unknown_choice(node, path, &text, Self::NAMES));
                        None
                    }
                }
            }
        }
    };
}
pub(crate) use plan_enum;

pub(crate) fn unknown_choice(
    node: &Node<'_>,
    path: &FieldPath,
    text: &str,
    names: &[&str],
) -> Diagnostic {
    let choices = quoted_list(names);
    let mut diagnostic = Diagnostic::error(
        path.as_str(),
        node.span(),
        format!(
            "`{}` cannot be \"{text}\": expected {choices}",
            path.last_key()
        ),
    );
    if let Some(close) = closest(text, names.iter().copied()) {
        diagnostic = diagnostic.with_help(format!("did you mean \"{close}\"?"));
    }
    diagnostic
}

/// `"a", "b" or "c"`.
pub(crate) fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// The candidate closest to `word` by edit distance, when close enough to be a typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, candidate)| {
            *distance <= 2.max(candidate.len() / 4) && *distance < candidate.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Explains an unknown key, when it has a known reason to be wrong here.
pub(crate) type KeyHint<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the fields of one table. Every key asked for is remembered, so
/// [`Fields::finish`] can reject the others as unknown and suggest the intended one.
pub(crate) struct Fields<'a, 'i> {
    table: &'a DeTable<'i>,
    pub span: Range<usize>,
    pub path: FieldPath,
    expected: Vec<&'static str>,
    /// Explains why a key is unknown here (e.g. it belongs to another resource kind).
    hint: Option<KeyHint<'a>>,
}

impl<'a, 'i> Fields<'a, 'i> {
    pub fn new(table: &'a DeTable<'i>, span: Range<usize>, path: FieldPath) -> Self {
        Fields {
            table,
            span,
            path,
            expected: Vec::new(),
            hint: None,
        }
    }

    /// Opens `node` as a table, or reports that it is not one.
    pub fn open(node: &'a Node<'i>, path: &FieldPath, cx: &mut Cx) -> Option<Self> {
        match node.get_ref().as_table() {
            Some(table) => Some(Fields::new(table, node.span(), path.clone())),
            None => {
                wrong_type(node, path, "a table", cx);
                None
            }
        }
    }

    /// The table being read.
    pub fn table(&self) -> &'a DeTable<'i> {
        self.table
    }

    pub fn with_hint(mut self, hint: KeyHint<'a>) -> Self {
        self.hint = Some(hint);
        self
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// The raw node of `key`, marking it as known.
    pub fn node(&mut self, key: &'static str) -> Option<(&'a Node<'i>, FieldPath)> {
        if !self.expected.contains(&key) {
            self.expected.push(key);
        }
        self.table.get(key).map(|node| (node, self.path.key(key)))
    }

    pub fn optional<T: FromToml>(&mut self, key: &'static str, cx: &mut Cx) -> Option<T> {
        let (node, path) = self.node(key)?;
        T::from_toml(node, &path, cx)
    }

    pub fn required<T: FromToml>(&mut self, key: &'static str, cx: &mut Cx) -> Option<T> {
        if !self.has(key) {
            self.node(key);
            self.missing(key, cx);
            return None;
        }
        self.optional(key, cx)
    }

    pub fn missing(&self, key: &str, cx: &mut Cx) {
        cx.push(self.missing_diagnostic(key));
    }

    /// "missing field `key`", at this table.
    pub fn missing_diagnostic(&self, key: &str) -> Diagnostic {
        let table = if self.path.as_str().is_empty() {
            "the plan".to_string()
        } else {
            format!("`{}`", self.path.as_str())
        };
        Diagnostic::error(
            self.path.as_str(),
            self.span.clone(),
            format!("missing field `{key}` in {table}"),
        )
    }

    /// Which one of mutually exclusive keys is present (e.g. a check's `http`/`tcp`/...).
    /// Reports none or several.
    pub fn one_of(
        &mut self,
        keys: &[&'static str],
        what: &str,
        cx: &mut Cx,
    ) -> Option<&'static str> {
        for key in keys {
            if !self.expected.contains(key) {
                self.expected.push(key);
            }
        }
        let present: Vec<&'static str> = keys.iter().copied().filter(|key| self.has(key)).collect();
        let choices = keys
            .iter()
            .map(|key| format!("`{key}`"))
            .collect::<Vec<_>>()
            .join(", ");
        match present.as_slice() {
            [only] => Some(only),
            [] => {
                cx.push(
                    Diagnostic::error(
                        self.path.as_str(),
                        self.span.clone(),
                        format!("{what} needs one of {choices}"),
                    )
                    .with_help(format!("give exactly one of {choices}")),
                );
                None
            }
            [first, others @ ..] => {
                for other in others {
                    let span = self.key_span(other);
                    cx.push(
                        Diagnostic::error(
                            self.path.key(other).as_str(),
                            span,
                            format!("{what} has both `{first}` and `{other}`"),
                        )
                        .with_help(format!("give exactly one of {choices}")),
                    );
                }
                None
            }
        }
    }

    fn key_span(&self, key: &str) -> Range<usize> {
        self.table
            .get_key_value(key)
            .map_or(self.span.clone(), |(key, _)| key.span())
    }

    /// Reports every key that was never asked for.
    pub fn finish(self, cx: &mut Cx) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref().as_ref();
            if self.expected.contains(&name) {
                continue;
            }
            let mut diagnostic = Diagnostic::error(
                self.path.key(name).as_str(),
                key.span(),
                format!("unknown field `{name}`"),
            );
            let explained = self.hint.and_then(|hint| hint(name));
            let suggestion = closest(name, self.expected.iter().copied());
            let expected = self
                .expected
                .iter()
                .map(|key| format!("`{key}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let help = match (explained, suggestion) {
                (Some(explained), _) => explained,
                (None, Some(close)) => format!("did you mean `{close}`?"),
                (None, None) if expected.is_empty() => "this table takes no fields".to_string(),
                (None, None) => format!("expected one of {expected}"),
            };
            diagnostic = diagnostic.with_help(help);
            cx.push(diagnostic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_bare() {
        let path = FieldPath::root()
            .key("resources")
            .key("a.b")
            .key("at")
            .index(2);
        assert_eq!(path.as_str(), "resources.\"a.b\".at[2]");
        assert_eq!(path.last_key(), "at");
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(closest("timout", ["timeout", "retries"]), Some("timeout"));
        assert_eq!(closest("colour", ["timeout", "retries"]), None);
        assert_eq!(closest("rol", ["role"]), Some("role"));
    }

    #[test]
    fn suggested_variable_names_come_from_the_path() {
        let path = FieldPath::root()
            .key("resources")
            .key("orders-db")
            .key("at")
            .key("dr")
            .key("password");
        assert_eq!(suggested_variable(&path), "ORDERS_DB_DR_PASSWORD");
    }
}
