// SPDX-License-Identifier: GPL-2.0

//! `secmmu`: read and drive the secmmu test device from userspace.
//!
//! ```text
//! secmmu stats [CTX]                    global or per-context counters
//! secmmu events                         the ordering event log
//! secmmu timeline [FILE] [--nth N]      one helper migration as a timeline
//! secmmu migrate PID ADDR NODE [unhardened]
//! secmmu scenario [--ktap] [--timelines] [--thps N] [--rounds N]
//! secmmu stress [--ktap] [--seconds N] [--contexts N] [--thps N] [--seed N] [--min-migrations N] [--inject]
//! secmmu fuzz [--ktap] [--seed N] [--ops N] [--seconds N] [--break-model]
//! secmmu bench [--thps N] [--rounds N] [--loops N] [--json FILE]
//! secmmu paths [--ktap] [--log FILE] [--bin PATH] [CASE...]
//! ```

use secmmu::{bench, debugfs, events, fuzz, paths, rng, scenario, stress, timeline};
use std::process::ExitCode;

const USAGE: &str = "usage: secmmu stats [CTX] | events | timeline [FILE] [--nth N] | \
migrate PID ADDR NODE [unhardened] | scenario [--ktap] [--timelines] [--thps N] [--rounds N] | \
stress [--ktap] [--seconds N] [--contexts N] [--thps N] [--seed N] [--min-migrations N] \
[--inject] | \
fuzz [--ktap] [--seed N] [--ops N] [--seconds N] [--break-model] | \
bench [--thps N] [--rounds N] [--loops N] [--json FILE] | \
paths [--ktap] [--log FILE] [--bin PATH] [CASE...]";

fn num(args: &[String], flag: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number")),
    }
}

fn timeline_cmd(args: &[String]) -> Result<(), String> {
    let nth = num(args, "--nth", 0)?;
    let file = args
        .iter()
        .find(|a| !a.starts_with("--") && a.parse::<usize>().is_err());
    let text = match file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?,
        None => debugfs::read("events")?,
    };
    let ev = events::parse(&text).map_err(|e| e.to_string())?;
    let migs = events::migrations(&ev);
    let m = migs.get(nth).ok_or_else(|| {
        format!(
            "the log holds {} helper migration(s); no number {nth}",
            migs.len()
        )
    })?;
    print!("{}", timeline::render(&ev, m));
    Ok(())
}

/// Renders the migration of a run's log with the most device writes after
/// the copy began (the first if none has any), with a title.
fn run_timeline(title: &str, row: &scenario::Row) -> String {
    let Ok(ev) = events::parse(&row.events) else {
        return format!("{title}: unreadable event log\n");
    };
    let migs = events::migrations(&ev);
    let pick = migs
        .iter()
        .enumerate()
        .max_by_key(|(i, m)| (events::stale_after_copy(&ev, m), std::cmp::Reverse(*i)))
        .map(|(_, m)| m);
    match pick {
        Some(m) => format!("\n=== {title}\n\n{}", timeline::render(&ev, m)),
        None => format!("{title}: no migration in the event log\n"),
    }
}

fn scenario_cmd(args: &[String]) -> Result<bool, String> {
    let o = scenario::Options {
        thps: num(args, "--thps", 2)?,
        rounds: num(args, "--rounds", 5)?,
        ..Default::default()
    };
    let ktap = args.iter().any(|a| a == "--ktap");
    let rows = scenario::run(&o);
    let ok = rows.iter().all(|r| r.failure.is_none());
    if ktap {
        println!("TAP version 13\n1..{}", rows.len());
        for (i, r) in rows.iter().enumerate() {
            let name = format!("scenario_{}_{}", r.driver, r.mode.replace('+', "_"));
            println!(
                "# {name}: {} migrations, {} device writes, {} invalidations, {} late caught, {} lost, THPs on nodes {:?}",
                r.migrations, r.device_writes, r.invalidations, r.late_caught, r.lost, r.nodes
            );
            if !r.note.is_empty() {
                println!("# {name}: {}", r.note);
            }
            match (&r.skipped, &r.failure) {
                (Some(why), _) => println!("ok {} {name} # SKIP {why}", i + 1),
                (None, None) => println!("ok {} {name}", i + 1),
                (None, Some(why)) => {
                    println!("# {name}: {why}");
                    println!("not ok {} {name}", i + 1);
                }
            }
        }
        return Ok(ok);
    }
    println!("{}", scenario::table(&rows));
    for r in &rows {
        let why = r
            .failure
            .as_deref()
            .or(r.skipped.as_deref())
            .unwrap_or(scenario::expectation(r));
        println!(
            "  {:<15} {:<18} THPs now on nodes {:?}; {why}",
            r.driver, r.mode, r.nodes
        );
        if !r.note.is_empty() {
            println!("  {:<34} {}", "", r.note);
        }
    }
    if args.iter().any(|a| a == "--timelines") {
        if let Some(r) = rows.iter().find(|r| r.mode == "hardened+inject") {
            print!(
                "{}",
                run_timeline(
                    "one hardened migration (late_invalidate injected, caught)",
                    r
                )
            );
        }
        if let Some(r) = rows.iter().find(|r| r.mode == "unhardened+inject") {
            print!(
                "{}",
                run_timeline(
                    "one unhardened migration (late_invalidate injected): the seed's bug",
                    r
                )
            );
        }
    }
    Ok(ok)
}

/// Prints named checks as KTAP (or plain lines); true if all held.
fn print_checks(
    ktap: bool,
    prefix: &str,
    info: &[String],
    checks: &[(String, Option<String>)],
) -> bool {
    if ktap {
        println!("TAP version 13\n1..{}", checks.len());
    }
    for l in info {
        println!("{}{prefix}: {l}", if ktap { "# " } else { "" });
    }
    for (i, (name, bad)) in checks.iter().enumerate() {
        match (ktap, bad) {
            (true, None) => println!("ok {} {prefix}_{name}", i + 1),
            (true, Some(why)) => {
                for l in why.lines() {
                    println!("# {prefix}_{name}: {l}");
                }
                println!("not ok {} {prefix}_{name}", i + 1);
            }
            (false, None) => println!("{prefix}: {name}: ok"),
            (false, Some(why)) => println!("{prefix}: {name}: FAILED: {why}"),
        }
    }
    checks.iter().all(|(_, b)| b.is_none())
}

fn stress_cmd(args: &[String]) -> Result<bool, String> {
    let d = stress::Options::default();
    let o = stress::Options {
        seconds: num(args, "--seconds", d.seconds as usize)? as u64,
        contexts: num(args, "--contexts", d.contexts)?.max(1),
        thps: num(args, "--thps", d.thps)?.max(1),
        seed: num(args, "--seed", d.seed as usize)? as u64,
        min_migrations: num(args, "--min-migrations", d.min_migrations as usize)? as u64,
        inject: args.iter().any(|a| a == "--inject"),
    };
    let r = stress::run(&o)?;
    let mut info = r.lines;
    info.extend(stress::INVARIANTS.iter().map(|i| format!("invariant: {i}")));
    Ok(print_checks(
        args.iter().any(|a| a == "--ktap"),
        "stress",
        &info,
        &r.checks,
    ))
}

fn fuzz_cmd(args: &[String]) -> Result<bool, String> {
    let seed = match num(args, "--seed", 0)? as u64 {
        0 => rng::clock_seed(),
        s => s,
    };
    let o = fuzz::Options {
        seed,
        ops: num(args, "--ops", 2000)? as u64,
        seconds: num(args, "--seconds", 60)? as u64,
        break_model: args.iter().any(|a| a == "--break-model"),
    };
    let out = fuzz::run(&o)?;
    let mut info = vec![
        format!(
            "seed {seed}, {} steps (replay: secmmu fuzz --seed {seed} --ops {} --seconds {})",
            out.steps, out.steps, o.seconds
        ),
        format!("results: {}", fuzz::summary(&out)),
    ];
    info.extend(out.notes.iter().cloned());
    let checks = vec![("sequence".to_string(), out.failure)];
    Ok(print_checks(
        args.iter().any(|a| a == "--ktap"),
        "fuzz",
        &info,
        &checks,
    ))
}

fn bench_cmd(args: &[String]) -> Result<(), String> {
    let d = bench::Options::default();
    let o = bench::Options {
        thps: num(args, "--thps", d.thps)?.max(1),
        rounds: num(args, "--rounds", d.rounds)?.max(1),
        loops: num(args, "--loops", d.loops)?.max(1),
    };
    let rep = bench::run(&o)?;
    print!("{}", bench::table(&o, &rep));
    let accel = std::env::var("SECMMU_ACCEL").unwrap_or_else(|_| "unknown".into());
    if let Some(i) = args.iter().position(|a| a == "--json") {
        let path = args.get(i + 1).ok_or("--json needs a file name")?;
        std::fs::write(path, bench::json(&o, &rep, &accel)).map_err(|e| format!("{path}: {e}"))?;
        println!("raw rounds: {path}");
    }
    Ok(())
}

/// The value of `flag`, if given.
fn opt<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

/// Runs `bin` with `-t CASE` for each case named (all cases if none),
/// echoing its output; returns the output and whether it exited 0.
fn run_paths_test(bin: &str, cases: &[&str]) -> Result<(String, bool), String> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(bin);
    for c in cases {
        cmd.arg("-t").arg(c);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{bin}: {e} (the paths selftest is not built?)"))?;
    let mut out = String::new();
    // Each case's wall time, from the previous result line to its own: what
    // to look at when a kernel's run grows (the harness does not say).
    let mut since = std::time::Instant::now();
    if let Some(so) = child.stdout.take() {
        for line in BufReader::new(so).lines() {
            let line = line.map_err(|e| format!("{bin}: {e}"))?;
            println!("{line}");
            if line.starts_with("ok ") || line.starts_with("not ok ") {
                println!("# time: {:.1} s", since.elapsed().as_secs_f64());
                since = std::time::Instant::now();
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    let st = child.wait().map_err(|e| format!("{bin}: {e}"))?;
    Ok((out, st.success()))
}

/// The case names `bin -l` lists (kselftest_harness: `fixture  case`).
fn list_cases(bin: &str) -> Result<Vec<String>, String> {
    let out = std::process::Command::new(bin)
        .arg("-l")
        .output()
        .map_err(|e| format!("{bin} -l: {e}"))?;
    // A case line is indented, or follows its fixture's name; a line with
    // one unindented word names a fixture with no case on that line.
    // The harness prints the list on standard error.
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('-'))
        .filter(|l| l.starts_with(' ') || l.split_whitespace().count() > 1)
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect())
}

/// `secmmu paths`: runs the path cases (or reads a log of them) and prints
/// the path x oracle matrix. Fails on a violation, a failed case, or fewer
/// results than the harness planned (a case that never reported).
fn paths_cmd(args: &[String]) -> Result<bool, String> {
    let ktap = args.iter().any(|a| a == "--ktap");
    let (text, exit_ok) = match opt(args, "--log") {
        Some(f) => (
            std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?,
            true,
        ),
        None => {
            let bin = match opt(args, "--bin") {
                Some(b) => b.to_string(),
                None => {
                    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                    let top = exe
                        .parent()
                        .and_then(|d| d.parent())
                        .ok_or("no build dir")?;
                    top.join("selftests/c/paths_test").display().to_string()
                }
            };
            let skip = ["--ktap", "--log", "--bin"];
            let mut cases = Vec::new();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if a == "--bin" || a == "--log" {
                    it.next();
                } else if !skip.contains(&a.as_str()) {
                    cases.push(a.as_str());
                }
            }
            let (out, ok) = run_paths_test(&bin, &cases)?;
            // Cases left out of this run are rows too: not run, and why.
            let mut out = out;
            if !cases.is_empty() {
                for c in list_cases(&bin)?
                    .iter()
                    .filter(|c| !cases.contains(&c.as_str()))
                {
                    if !c.starts_with("oracle_") {
                        out.push_str(&format!(
                            "# cell path={c} oracle=- not_run=left out of this run (selection)\n"
                        ));
                    }
                }
            }
            (out, ok)
        }
    };
    let m = paths::Matrix::parse(&text)?;
    let p = paths::plan(&text);
    let prefix = if ktap { "# " } else { "" };
    for l in m.render().lines() {
        println!("{prefix}{l}");
    }
    let complete = p.planned > 0 && p.results == p.planned;
    if !complete {
        println!(
            "{prefix}paths: {} of {} planned cases reported a result",
            p.results, p.planned
        );
    }
    Ok(exit_ok && complete && p.failed == 0 && m.violations() == 0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    let r = match args.first().map(String::as_str) {
        Some("stats") => match rest.first() {
            Some(ctx) => debugfs::read(&format!("ctx/{ctx}/stats")).map(|s| print!("{s}")),
            None => debugfs::read("stats").map(|s| print!("{s}")),
        },
        Some("events") => debugfs::read("events").and_then(|t| {
            events::parse(&t).map_err(|e| e.to_string())?;
            print!("{t}");
            Ok(())
        }),
        Some("timeline") => timeline_cmd(rest),
        Some("migrate") => {
            if rest.len() < 3 || rest.len() > 4 {
                Err(USAGE.to_string())
            } else {
                debugfs::write("migrate_thp", &rest.join(" "))
                    .map_err(|e| format!("migrate_thp: {e}"))
                    .and_then(|()| debugfs::read("migrate_thp").map(|s| print!("{s}")))
            }
        }
        Some("scenario") => match scenario_cmd(rest) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Some("stress") => match stress_cmd(rest) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Some("bench") => bench_cmd(rest),
        Some("paths") => match paths_cmd(rest) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Some("fuzz") => match fuzz_cmd(rest) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        _ => Err(USAGE.to_string()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secmmu: {e}");
            ExitCode::FAILURE
        }
    }
}
