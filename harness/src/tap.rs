//! The little TAP the harness speaks: `ok N - name # detail`, `not ok N - name`, `# SKIP reason`,
//! diagnostics (`#   ...`) after a failure, and the runner's `# suite: a b c` plan line.

use serde::Serialize;

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

impl TestResult {
    pub fn pass(name: &str, detail: &str) -> Self {
        Self::new(name, Status::Pass, detail)
    }
    pub fn fail(name: &str, detail: &str) -> Self {
        Self::new(name, Status::Fail, detail)
    }
    pub fn skip(name: &str, detail: &str) -> Self {
        Self::new(name, Status::Skip, detail)
    }
    fn new(name: &str, status: Status, detail: &str) -> Self {
        Self {
            name: name.to_string(),
            status,
            detail: detail.to_string(),
        }
    }

    /// The TAP line for this result as test number `n`.
    pub fn tap_line(&self, n: usize) -> String {
        let detail = self.detail.replace('\n', " | ");
        match self.status {
            Status::Pass if detail.is_empty() => format!("ok {n} - {}", self.name),
            Status::Pass => format!("ok {n} - {} # {detail}", self.name),
            Status::Skip => format!("ok {n} - {} # SKIP {detail}", self.name),
            Status::Fail if detail.is_empty() => format!("not ok {n} - {}", self.name),
            Status::Fail => format!("not ok {n} - {} # {detail}", self.name),
        }
    }
}

/// Parses result lines; a failure's indented diagnostics are appended to its detail.
pub fn parse(text: &str) -> Vec<TestResult> {
    let mut out: Vec<TestResult> = Vec::new();
    for line in text.lines() {
        let (ok, rest) = if let Some(r) = line.strip_prefix("not ok") {
            (false, r)
        } else if let Some(r) = line.strip_prefix("ok") {
            (true, r)
        } else {
            if let Some(diag) = line.strip_prefix("#   ") {
                if let Some(last) = out.last_mut() {
                    if last.status == Status::Fail {
                        if !last.detail.is_empty() {
                            last.detail.push('\n');
                        }
                        last.detail.push_str(diag);
                    }
                }
            }
            continue;
        };
        // " 3 - name # directive" or " - name"
        let rest = rest
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        let Some(rest) = rest.trim_start().strip_prefix("- ") else {
            continue;
        };
        let (name, directive) = match rest.split_once(" # ") {
            Some((n, d)) => (n.trim(), d.trim()),
            None => (rest.trim(), ""),
        };
        let (status, detail) = if !ok {
            (Status::Fail, directive)
        } else if let Some(reason) = directive
            .strip_prefix("SKIP")
            .or_else(|| directive.strip_prefix("skip"))
        {
            (Status::Skip, reason.trim())
        } else {
            (Status::Pass, directive)
        };
        out.push(TestResult {
            name: name.to_string(),
            status,
            detail: detail.to_string(),
        });
    }
    out
}

/// The names the guest runner announced with `# suite: a b c` before running them.
pub fn planned_names(text: &str) -> Vec<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("# suite:"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: &str = "TAP version 13\n\
        # suite: guest.drivers kmod.load-unload kmod.bad-param fence.x\n\
        1..4\n\
        ok 1 - guest.drivers # time=1.2s\n\
        not ok 2 - kmod.load-unload # time=0.3s exit=1\n\
        #   FAIL: modinfo: no description\n\
        #   more\n\
        ok 3 - kmod.bad-param # SKIP no module\n";

    #[test]
    fn parses_pass_fail_skip_and_diagnostics() {
        let r = parse(GUEST);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], TestResult::pass("guest.drivers", "time=1.2s"));
        assert_eq!(r[1].status, Status::Fail);
        assert_eq!(
            r[1].detail,
            "time=0.3s exit=1\nFAIL: modinfo: no description\nmore"
        );
        assert_eq!(r[2], TestResult::skip("kmod.bad-param", "no module"));
    }

    #[test]
    fn planned_names_list_every_test_even_those_not_run() {
        assert_eq!(
            planned_names(GUEST),
            vec![
                "guest.drivers",
                "kmod.load-unload",
                "kmod.bad-param",
                "fence.x"
            ]
        );
        assert!(planned_names("1..0\n").is_empty());
    }

    #[test]
    fn tap_lines_round_trip() {
        for t in [
            TestResult::pass("a.b", ""),
            TestResult::pass("a.b", "3 cargo tests"),
            TestResult::fail("c", "why"),
            TestResult::skip("d", "no GPU"),
        ] {
            assert_eq!(parse(&t.tap_line(7)), vec![t]);
        }
    }

    #[test]
    fn host_lines_without_numbers_parse() {
        let r = parse("ok - cargo.test # 12 cargo tests passed\nnot ok - x\n");
        assert_eq!(
            r[0],
            TestResult::pass("cargo.test", "12 cargo tests passed")
        );
        assert_eq!(r[1], TestResult::fail("x", ""));
    }
}
