//! `mariadb-dump --system=users` read statement by statement: what each one is, whom it is
//! about, and in which step of a restore it belongs (see [`crate::accounts`]).

use crate::sqltext::{self, Dialect};

/// Accounts that belong to the server itself: never created nor granted to by a restore.
const SYSTEM_USERS: &[&str] = &[
    "mariadb.sys",
    "mysql.sys",
    "mysql.session",
    "mysql.infoschema",
];

/// The role `mariadb-dump` creates around its own import (so the importing account does not
/// keep the roles it creates); lifeboat takes back such roles itself instead.
const IMPORT_ROLE: &str = "mariadb_dump_import_role";

/// One statement of the script, classified.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Creates an account or a role: applied before the databases.
    Account(String),
    /// Refers to objects or to other accounts: applied after the databases, in this order
    /// (role memberships, privileges, default roles, anything else).
    Later(u8, String),
    /// Left out, with the reason (`None`: the dump's own session set-up, said nowhere).
    Skip(Option<String>),
}

/// The steps of a captured script for a server lifeboat connects to as `me` (any host):
/// nothing is about `me`, a system account, or PROXY; each of those is one warning (those
/// about one account are counted in one warning).
pub(crate) fn plan(script: &str, me: &str) -> (Vec<String>, Vec<(u8, String)>, Vec<String>) {
    let mut accounts = Vec::new();
    let mut later = Vec::new();
    let mut warnings = Vec::new();
    // (account, how many statements) left alone, in order of first appearance.
    let mut left_alone: Vec<(String, &'static str, usize)> = Vec::new();
    for statement in sqltext::split(script, Dialect::Mysql) {
        match classify(&statement, me) {
            Classified::Step(Step::Account(s)) => accounts.push(s),
            Classified::Step(Step::Later(rank, s)) => later.push((rank, s)),
            Classified::Step(Step::Skip(Some(why))) => warnings.push(why),
            Classified::Step(Step::Skip(None)) => {}
            Classified::About(account, why) => {
                match left_alone.iter_mut().find(|(a, _, _)| *a == account) {
                    Some((_, _, n)) => *n += 1,
                    None => left_alone.push((account, why, 1)),
                }
            }
        }
    }
    later.sort_by_key(|(rank, _)| *rank);
    for (account, why, n) in left_alone {
        warnings.push(format!(
            "left alone: {account} ({why}): {n} statement(s) about it not applied"
        ));
    }
    (accounts, later, warnings)
}

enum Classified {
    Step(Step),
    /// About an account a restore never touches: which, and why.
    About(String, &'static str),
}

fn classify(statement: &str, me: &str) -> Classified {
    let (version, text) = sqltext::unwrap_executable(statement);
    // MySQL 8's twins of MariaDB's statements (`/*!80001 ALTER USER ... DEFAULT ROLE */`):
    // MariaDB skips them, and the `/*M!` statement beside each says the same.
    if version.is_some_and(|v| (80000..100000).contains(&v)) {
        return Classified::Step(Step::Skip(None));
    }
    let tokens = tokens(text);
    let words: Vec<String> = tokens
        .iter()
        .map(|t| match t {
            Token::Word(w) => w.to_ascii_uppercase(),
            _ => String::new(),
        })
        .collect();
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x == w);
    let mentions_import_role = tokens
        .iter()
        .any(|t| matches!(t, Token::Word(w) | Token::Quoted(w) if w == IMPORT_ROLE));
    let session = is(0, "SET") && !is(1, "DEFAULT")
        || is(0, "SELECT")
        || is(0, "EXECUTE")
        || (is(0, "DROP") && is(1, "ROLE") && mentions_import_role);
    if session || (mentions_import_role && !is(1, "ROLE")) {
        return Classified::Step(Step::Skip(None));
    }
    let shown = || sqltext::shown(text, 160);
    if is(0, "CREATE") && is(1, "USER") {
        let at = if is(2, "IF") { 5 } else { 2 };
        return match account_at(&tokens, at) {
            Some(a) => about(&a, me).unwrap_or(Classified::Step(Step::Account(text.to_string()))),
            None => Classified::Step(Step::Later(3, text.to_string())),
        };
    }
    if is(0, "CREATE") && is(1, "ROLE") {
        let at = if is(2, "IF") { 5 } else { 2 };
        let Some(Account { user, .. }) = account_at(&tokens, at) else {
            return Classified::Step(Step::Later(3, text.to_string()));
        };
        if user == IMPORT_ROLE {
            return Classified::Step(Step::Skip(None));
        }
        // Without the dump's `WITH ADMIN` its import role: lifeboat takes back what the
        // connecting account gains by creating it (see `MyServer::restore_grants`).
        return Classified::Step(Step::Account(format!(
            "CREATE ROLE IF NOT EXISTS {}",
            quote_name(&user)
        )));
    }
    if is(0, "GRANT") {
        let Some(to) = words.iter().rposition(|w| w == "TO") else {
            return Classified::Step(Step::Later(3, text.to_string()));
        };
        if is(to + 1, "CURRENT_USER") {
            return Classified::About("CURRENT_USER".into(), "the account lifeboat connects as");
        }
        let grantee = account_at(&tokens, to + 1);
        if let Some(c) = grantee.as_ref().and_then(|a| about(a, me)) {
            return c;
        }
        let on = words[..to].iter().position(|w| w == "ON");
        if is(1, "PROXY") && on == Some(2) {
            return Classified::Step(Step::Skip(Some(format!(
                "skipped `{}`: a PROXY grant is given only by the account proxied for",
                shown()
            ))));
        }
        let rank = if on.is_some() { 1 } else { 0 };
        return Classified::Step(Step::Later(rank, text.to_string()));
    }
    if is(0, "SET") && is(1, "DEFAULT") && is(2, "ROLE") {
        // Without `FOR` (or `FOR CURRENT_USER`) it is the connecting account's.
        let Some(f) = words.iter().position(|w| w == "FOR") else {
            return Classified::About("CURRENT_USER".into(), "the account lifeboat connects as");
        };
        if is(f + 1, "CURRENT_USER") {
            return Classified::About("CURRENT_USER".into(), "the account lifeboat connects as");
        }
        if let Some(a) = account_at(&tokens, f + 1)
            && let Some(c) = about(&a, me)
        {
            return c;
        }
        return Classified::Step(Step::Later(2, text.to_string()));
    }
    Classified::Step(Step::Later(3, text.to_string()))
}

/// The role a line of `SHOW GRANTS` grants (`GRANT `r` TO ...`), when it grants one.
pub(crate) fn granted_role(line: &str) -> Option<String> {
    let tokens = tokens(line);
    let word = |i: usize, w: &str| matches!(tokens.get(i), Some(Token::Word(x)) if x.eq_ignore_ascii_case(w));
    if !word(0, "GRANT") || !word(2, "TO") {
        return None;
    }
    match tokens.get(1)? {
        Token::Quoted(role) => Some(role.clone()),
        Token::Word(role) => Some(role.clone()),
        Token::Punct(_) => None,
    }
}

/// A role membership a statement grants (`GRANT role TO user[@host] [WITH ADMIN OPTION]`):
/// the role, the grantee's user and host (empty for a role), and whether with admin option.
pub(crate) fn role_grant(statement: &str) -> Option<(String, String, String, bool)> {
    let (_, text) = sqltext::unwrap_executable(statement);
    let tokens = tokens(text);
    let word = |i: usize, w: &str| matches!(tokens.get(i), Some(Token::Word(x)) if x.eq_ignore_ascii_case(w));
    if !word(0, "GRANT") || !word(2, "TO") {
        return None;
    }
    let role = match tokens.get(1)? {
        Token::Quoted(r) | Token::Word(r) => r.clone(),
        Token::Punct(_) => return None,
    };
    let grantee = account_at(&tokens, 3)?;
    let rest = if grantee.host.is_some() { 6 } else { 4 };
    let admin = word(rest, "WITH") && word(rest + 1, "ADMIN");
    Some((role, grantee.user, grantee.host.unwrap_or_default(), admin))
}

fn about(account: &Account, me: &str) -> Option<Classified> {
    let name = account.shown();
    if account.user == me {
        Some(Classified::About(name, "the account lifeboat connects as"))
    } else if account.host.is_some() && SYSTEM_USERS.contains(&account.user.as_str()) {
        Some(Classified::About(name, "a system account"))
    } else {
        None
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    /// A quoted name or string, unquoted.
    Quoted(String),
    Punct(char),
}

fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '`' | '\'' | '"') {
            let mut value = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '\\' && c != '`' && i + 1 < chars.len() {
                    value.push(chars[i + 1]);
                    i += 2;
                } else if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        value.push(c);
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                } else {
                    value.push(chars[i]);
                    i += 1;
                }
            }
            out.push(Token::Quoted(value));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | '.'))
            {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

struct Account {
    user: String,
    host: Option<String>,
}

impl Account {
    fn shown(&self) -> String {
        let user = sqltext::shown(&self.user, 80);
        match &self.host {
            Some(host) => format!("'{user}'@'{}'", sqltext::shown(host, 80)),
            None => format!("role '{user}'"),
        }
    }
}

/// `user[@host]` at token `i`.
fn account_at(tokens: &[Token], i: usize) -> Option<Account> {
    let name = |t: Option<&Token>| match t? {
        Token::Word(w) if !w.eq_ignore_ascii_case("CURRENT_USER") => Some(w.clone()),
        Token::Quoted(q) => Some(q.clone()),
        _ => None,
    };
    let user = name(tokens.get(i))?;
    let host = match tokens.get(i + 1) {
        Some(Token::Punct('@')) => name(tokens.get(i + 2)),
        _ => None,
    };
    Some(Account { user, host })
}

fn quote_name(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `mariadb-dump --system=users` (10.11), with odd names.
    const DUMP: &str = "/*M!999999\\- enable the sandbox mode */ \n\
/*!40101 SET NAMES utf8mb4 */;\n\
CREATE USER IF NOT EXISTS `mariadb.sys`@`localhost` ACCOUNT LOCK PASSWORD EXPIRE;\n\
CREATE USER IF NOT EXISTS `root`@`localhost`;\n\
CREATE USER IF NOT EXISTS `root`@`::1`;\n\
CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*D8';\n\
CREATE USER IF NOT EXISTS `we;ird``s TO x`@`%` IDENTIFIED BY PASSWORD '*C0';\n\
SELECT COALESCE(CURRENT_ROLE(),'NONE') into @current_role;\n\
CREATE ROLE IF NOT EXISTS mariadb_dump_import_role;\n\
GRANT mariadb_dump_import_role TO CURRENT_USER();\n\
SET ROLE mariadb_dump_import_role;\n\
/*M!100005 CREATE ROLE IF NOT EXISTS 'reader' WITH ADMIN mariadb_dump_import_role */;\n\
/*M!100005 GRANT 'reader' TO 'root'@'localhost' WITH ADMIN OPTION */;\n\
GRANT SELECT, DELETE ON `mysql`.`global_priv` TO `mariadb.sys`@`localhost`;\n\
GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION;\n\
/*M!100005 SET DEFAULT ROLE NONE FOR 'root'@'localhost' */;\n\
/*!80001 ALTER USER 'root'@'localhost' DEFAULT ROLE NONE */;\n\
GRANT ALL PRIVILEGES ON *.* TO `root`@`::1` WITH GRANT OPTION;\n\
/*M!100005 SET DEFAULT ROLE 'reader' FOR 'app'@'%' */;\n\
GRANT `reader` TO `app`@`%`;\n\
GRANT SELECT (`pub`) ON `zzz`.`t` TO `app`@`%`;\n\
GRANT EXECUTE ON PROCEDURE `zzz`.`p` TO `app`@`%`;\n\
GRANT PROXY ON `app`@`%` TO `we;ird``s TO x`@`%`;\n\
GRANT SELECT ON `a;b`.* TO `we;ird``s TO x`@`%`;\n\
GRANT SELECT ON `zzz`.* TO `reader`;\n\
SET ROLE NONE;\n\
DROP ROLE mariadb_dump_import_role;\n\
/*M!100203 EXECUTE IMMEDIATE CONCAT('SET ROLE ', @current_role) */;\n";

    #[test]
    fn accounts_come_first_then_grants_by_kind_and_nothing_about_me() {
        let (accounts, later, warnings) = plan(DUMP, "root");
        assert_eq!(
            accounts,
            [
                "CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*D8'",
                "CREATE USER IF NOT EXISTS `we;ird``s TO x`@`%` IDENTIFIED BY PASSWORD '*C0'",
                "CREATE ROLE IF NOT EXISTS `reader`",
            ]
        );
        let later: Vec<&str> = later.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            later,
            [
                "GRANT `reader` TO `app`@`%`",
                "GRANT SELECT (`pub`) ON `zzz`.`t` TO `app`@`%`",
                "GRANT EXECUTE ON PROCEDURE `zzz`.`p` TO `app`@`%`",
                "GRANT SELECT ON `a;b`.* TO `we;ird``s TO x`@`%`",
                "GRANT SELECT ON `zzz`.* TO `reader`",
                "SET DEFAULT ROLE 'reader' FOR 'app'@'%'",
            ]
        );
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert!(
            warnings[0].starts_with("skipped `GRANT PROXY ON `app`@`%` TO"),
            "{warnings:?}"
        );
        assert_eq!(
            warnings[1],
            "left alone: 'mariadb.sys'@'localhost' (a system account): 2 statement(s) about it not applied"
        );
        assert!(
            warnings[2].starts_with(
                "left alone: 'root'@'localhost' (the account lifeboat connects as): 4 statement(s)"
            ),
            "{warnings:?}"
        );
        assert!(
            warnings[3].starts_with("left alone: 'root'@'::1'"),
            "{warnings:?}"
        );
    }

    #[test]
    fn role_grants_are_told_from_privileges() {
        assert_eq!(
            granted_role("GRANT `r;3` TO `root`@`localhost` WITH ADMIN OPTION").as_deref(),
            Some("r;3")
        );
        assert_eq!(
            granted_role("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`"),
            None
        );
    }

    #[test]
    fn role_memberships_are_read_from_grants() {
        assert_eq!(
            role_grant("/*M!100005 GRANT 'r;x' TO 'a b'@'%' WITH ADMIN OPTION */"),
            Some(("r;x".into(), "a b".into(), "%".into(), true))
        );
        assert_eq!(
            role_grant("GRANT `reader` TO `writer`"),
            Some(("reader".into(), "writer".into(), String::new(), false))
        );
        assert_eq!(role_grant("GRANT SELECT ON `d`.* TO `a`@`%`"), None);
    }

    #[test]
    fn an_account_named_like_a_keyword_is_still_found() {
        let (accounts, later, warnings) = plan(
            "CREATE USER IF NOT EXISTS `TO`@`%`;\nGRANT SELECT ON `db`.`TO` TO 'TO'@'%';\n\
             GRANT ALL ON *.* TO 'me'@'h' IDENTIFIED BY PASSWORD 'x;y';\n",
            "me",
        );
        assert_eq!(accounts.len(), 1);
        assert_eq!(later.len(), 1);
        assert_eq!(warnings.len(), 1);
        let (_, later, warnings) = plan(
            "GRANT SELECT ON *.* TO CURRENT_USER;\nSET DEFAULT ROLE r;\n\
             SET DEFAULT ROLE r FOR CURRENT_USER;\n",
            "me",
        );
        assert!(later.is_empty(), "{later:?}");
        assert_eq!(
            warnings,
            [
                "left alone: CURRENT_USER (the account lifeboat connects as): 3 statement(s) about it not applied"
            ]
        );
    }
}
