//! A `mariadb-dump` of one database split as it streams into the client: the tables and their
//! rows go on to the server (the *body*), while the triggers, events, routines and final view
//! definitions are held back (small: definitions only) and applied once every database of
//! the restore has its tables.
//!
//! Why: a view is checked against the tables it reads when it is created, so a view in `aaa`
//! reading `zzz.t` fails while `zzz` is not loaded yet; and a table with triggers cannot be
//! renamed into another database (which a staged `--replace` does), while views, routines
//! and events cannot move at all. The dump's own layout makes the split exact: every line of
//! table data is one statement (`mariadb-dump` escapes newlines in values), the triggers of
//! a table follow its rows as a block opened by `/*!50003 SET @saved_cs_client` and closed
//! after `DELIMITER ;` by the `/*!50003 SET` lines that restore the session, and the events,
//! routines and final views come last, each section under a `-- Dumping events for database`,
//! `-- Dumping routines for database` or `-- Final view structure for view` title. The
//! placeholder the body creates for each view (a view of `NULL` columns) lets views of other
//! databases that read it be created before its real definition.

use std::io::Write;

/// Where a line of the dump goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Body,
    Objects,
    Views,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Body,
    /// In a trigger block: inside its `DELIMITER ;;` when `delimited` (at the start of a
    /// statement when `at_start`: a `DELIMITER ;` inside a trigger's text is not the end),
    /// after its `DELIMITER ;` when `closing`.
    Trigger {
        delimited: bool,
        at_start: bool,
        closing: bool,
    },
    /// Events and routines.
    Objects,
    /// The final view definitions, to the end.
    Views,
}

/// Lines before the first of these titles are the session set-up every part needs.
const SECTION_TITLES: &[&[u8]] = &[
    b"-- Table structure for table ",
    b"-- Temporary table structure for view ",
    b"-- Temporary view structure for view ",
    b"-- Sequence structure for ",
    b"-- Dumping events for database ",
    b"-- Dumping routines for database ",
    b"-- Final view structure for view ",
];

/// Enough of a line's start to route it.
const PREFIX: usize = 40;

/// The held-back parts of a dump, each a script for the client (with the dump's session
/// set-up first).
#[derive(Debug, Default, Clone)]
pub(crate) struct HeldBack {
    /// Triggers, events and routines.
    pub objects: Vec<u8>,
    /// The final view definitions (each drops what is under its name first, so running the
    /// script again is harmless).
    pub views: Vec<u8>,
}

/// Writes the body of a dump to `out`, keeping the rest (see the module's comment).
pub(crate) struct DumpSplit<W: Write> {
    out: W,
    mode: Mode,
    /// The current line's route, once known.
    route: Option<Route>,
    /// The start of the current line while its route is not known.
    start: Vec<u8>,
    /// The current line so far when it is held back (to see what it is at its end).
    line: Vec<u8>,
    header: Vec<u8>,
    in_header: bool,
    objects: Vec<u8>,
    views: Vec<u8>,
}

impl<W: Write> DumpSplit<W> {
    pub(crate) fn new(out: W) -> Self {
        Self {
            out,
            mode: Mode::Body,
            route: None,
            start: Vec::new(),
            line: Vec::new(),
            header: Vec::new(),
            in_header: true,
            objects: Vec::new(),
            views: Vec::new(),
        }
    }

    /// The held-back parts, once the whole dump went through (and the writer the body went
    /// to).
    pub(crate) fn finish(mut self) -> std::io::Result<(HeldBack, W)> {
        if !self.start.is_empty() {
            let start = std::mem::take(&mut self.start);
            self.decide(&start, true)?;
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
        self.out.flush()?;
        let script = |part: Vec<u8>, header: &[u8]| {
            if part.iter().all(|b| b.is_ascii_whitespace()) {
                Vec::new()
            } else {
                let mut s = header.to_vec();
                s.extend_from_slice(&part);
                s
            }
        };
        Ok((
            HeldBack {
                objects: script(self.objects, &self.header),
                views: script(self.views, &self.header),
            },
            self.out,
        ))
    }

    /// Routes the line starting with `start` (all of it when `whole`), and writes `start`.
    fn decide(&mut self, start: &[u8], whole: bool) -> std::io::Result<()> {
        let route = self.route_of(start);
        self.route = Some(route);
        if self.in_header && SECTION_TITLES.iter().any(|t| start.starts_with(t)) {
            self.in_header = false;
        }
        self.emit(route, start)?;
        if whole {
            self.end_line();
        }
        Ok(())
    }

    fn route_of(&mut self, start: &[u8]) -> Route {
        if let Mode::Trigger { closing: true, .. } = self.mode
            && !start.starts_with(b"/*!50003 SET ")
        {
            self.mode = Mode::Body;
        }
        match self.mode {
            Mode::Body => {
                if start.starts_with(b"-- Final view structure for view ") {
                    self.mode = Mode::Views;
                    Route::Views
                } else if start.starts_with(b"-- Dumping events for database ")
                    || start.starts_with(b"-- Dumping routines for database ")
                {
                    self.mode = Mode::Objects;
                    Route::Objects
                } else if start.starts_with(b"/*!50003 SET @saved_cs_client") {
                    self.mode = Mode::Trigger {
                        delimited: false,
                        at_start: false,
                        closing: false,
                    };
                    Route::Objects
                } else {
                    Route::Body
                }
            }
            Mode::Trigger { .. } => Route::Objects,
            Mode::Objects => {
                if start.starts_with(b"-- Final view structure for view ") {
                    self.mode = Mode::Views;
                    Route::Views
                } else {
                    Route::Objects
                }
            }
            Mode::Views => Route::Views,
        }
    }

    fn emit(&mut self, route: Route, bytes: &[u8]) -> std::io::Result<()> {
        match route {
            Route::Body => {
                if self.in_header {
                    self.header.extend_from_slice(bytes);
                }
                self.out.write_all(bytes)
            }
            Route::Objects => {
                self.objects.extend_from_slice(bytes);
                if let Mode::Trigger { .. } = self.mode {
                    self.line.extend_from_slice(bytes);
                }
                Ok(())
            }
            Route::Views => {
                self.views.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn end_line(&mut self) {
        self.route = None;
        let line = std::mem::take(&mut self.line);
        self.line_done(&line);
    }

    /// A held-back line of a trigger block ended: where the block stands.
    fn line_done(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Mode::Trigger {
            delimited,
            at_start,
            closing: false,
        } = self.mode
        {
            self.mode = if !delimited {
                Mode::Trigger {
                    delimited: line == b"DELIMITER ;;",
                    at_start: true,
                    closing: false,
                }
            } else {
                Mode::Trigger {
                    delimited: true,
                    at_start: line.ends_with(b";;"),
                    closing: at_start && line == b"DELIMITER ;",
                }
            };
        }
    }
}

impl<W: Write> Write for DumpSplit<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let newline = rest.iter().position(|&b| b == b'\n');
            let line_part = &rest[..newline.map_or(rest.len(), |n| n + 1)];
            rest = &rest[line_part.len()..];
            let ends = newline.is_some();
            match self.route {
                Some(route) => {
                    self.emit(route, line_part)?;
                    if ends {
                        self.end_line();
                    }
                }
                None => {
                    self.start.extend_from_slice(line_part);
                    if ends || self.start.len() >= PREFIX {
                        let start = std::mem::take(&mut self.start);
                        self.decide(&start, ends)?;
                    }
                }
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "/*M!999999\\- enable the sandbox mode */ \n\
-- MariaDB dump 10.19\n\
--\n\
-- Host: 127.0.0.1    Database: zzz\n\
/*!40101 SET NAMES utf8mb4 */;\n\
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n\
--\n\
-- Temporary table structure for view `v`\n\
--\n\
/*!50001 CREATE VIEW `v` AS SELECT\n 1 AS `id` */;\n\
--\n\
-- Table structure for table `t`\n\
--\n\
CREATE TABLE `t` (\n  `id` int(11) NOT NULL\n);\n\
LOCK TABLES `t` WRITE;\n\
INSERT INTO `t` VALUES\n(1,'-- Dumping events for database \\'x\\'\\n'),\n(2,'DELIMITER ;');\n\
UNLOCK TABLES;\n\
/*!50003 SET @saved_cs_client      = @@character_set_client */ ;\n\
/*!50003 SET sql_mode              = '' */ ;\n\
DELIMITER ;;\n\
/*!50003 CREATE*/ /*!50003 TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @x = '\n\
DELIMITER ;\n\
' */;;\n\
DELIMITER ;\n\
/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n\
/*!50003 SET collation_connection  = @saved_col_connection */ ;\n\
--\n\
-- Table structure for table `u`\n\
--\n\
CREATE TABLE `u` (`id` int);\n\
--\n\
-- Dumping events for database 'zzz'\n\
--\n\
--\n\
-- Dumping routines for database 'zzz'\n\
--\n\
DELIMITER ;;\n\
CREATE PROCEDURE `p`()\nSELECT 1\n;;\n\
DELIMITER ;\n\
--\n\
-- Final view structure for view `v`\n\
--\n\
/*!50001 DROP VIEW IF EXISTS `v`*/;\n\
/*!50001 VIEW `v` AS select `zzz`.`t`.`id` AS `id` from `zzz`.`t` */;\n\
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;\n";

    fn split_in(pieces: usize) -> (String, HeldBack) {
        let mut split = DumpSplit::new(Vec::new());
        let bytes = DUMP.as_bytes();
        let size = bytes.len().div_ceil(pieces);
        for piece in bytes.chunks(size.max(1)) {
            split.write_all(piece).unwrap();
        }
        let (held, body) = split.finish().unwrap();
        (String::from_utf8(body).unwrap(), held)
    }

    #[test]
    fn tables_and_rows_stream_on_definitions_wait() {
        let (body, held) = split_in(1);
        let header = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19\n--\n\
-- Host: 127.0.0.1    Database: zzz\n/*!40101 SET NAMES utf8mb4 */;\n\
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n--\n";
        assert!(body.starts_with(header), "{body}");
        assert!(
            body.contains(
                "(2,'DELIMITER ;');\nUNLOCK TABLES;\n--\n-- Table structure for table `u`"
            ),
            "{body}"
        );
        assert!(
            body.ends_with("CREATE TABLE `u` (`id` int);\n--\n"),
            "{body}"
        );
        assert!(
            !body.contains("TRIGGER") && !body.contains("PROCEDURE"),
            "{body}"
        );
        let objects = String::from_utf8(held.objects).unwrap();
        assert!(objects.starts_with(header), "{objects}");
        assert!(objects.contains("' */;;\nDELIMITER ;\n/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n/*!50003 SET collation_connection  = @saved_col_connection */ ;\n-- Dumping events"), "{objects}");
        assert!(
            objects.contains("CREATE PROCEDURE `p`()\nSELECT 1\n;;\nDELIMITER ;\n--\n"),
            "{objects}"
        );
        let views = String::from_utf8(held.views).unwrap();
        assert!(
            views.starts_with(header)
                && views.contains("-- Final view structure for view `v`\n--\n/*!50001 DROP VIEW"),
            "{views}"
        );
        assert!(!views.contains("PROCEDURE"), "{views}");
    }

    #[test]
    fn the_split_does_not_depend_on_how_the_stream_is_cut() {
        let whole = split_in(1);
        for pieces in [2, 3, 7, 50, 400, DUMP.len()] {
            let cut = split_in(pieces);
            assert_eq!(cut.0, whole.0, "{pieces} pieces");
            assert_eq!(cut.1.objects, whole.1.objects, "{pieces} pieces");
            assert_eq!(cut.1.views, whole.1.views, "{pieces} pieces");
        }
    }

    #[test]
    fn a_dump_without_definitions_holds_nothing_back() {
        let mut split = DumpSplit::new(Vec::new());
        split
            .write_all(b"/*!40101 SET NAMES utf8mb4 */;\n--\n-- Table structure for table `t`\n--\nCREATE TABLE t (a int);\n")
            .unwrap();
        let (held, _) = split.finish().unwrap();
        assert!(held.objects.is_empty() && held.views.is_empty());
    }
}
