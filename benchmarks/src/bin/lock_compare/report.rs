//! The report: the heading (machine, clock, the work loop), one table per scenario with the
//! ratios of its subject to the others, the summary (scenarios x locks), and the tallies
//! of what was checked.

use std::time::{Duration, Instant};

use shmsem_benchmarks::clock::clock_cost_ns;
use shmsem_benchmarks::stats::{median, range};
use shmsem_benchmarks::{fmt, machine};

use crate::record::WorkLoop;
use crate::runner::{Sample, Subject};
use crate::scenarios::{SCENARIOS, Scenario, Workload};
use crate::waits::Fairness;

/// The heading: version, machine, the clock's cost, the subjects' notes (where Python
/// is), and the work loop's calibration (`work_iters`: iterations per operation, per scenario).
pub fn header(
    subjects: &[Box<dyn Subject>],
    work_loop: &WorkLoop,
    work_iters: &[u64],
    selected: &[bool],
) {
    println!("shmsem {} lock comparison", env!("CARGO_PKG_VERSION"));
    println!("{}", machine::headline());
    println!(
        "clock read (monotonic): {:.0} ns; contended scenarios take two per acquisition",
        clock_cost_ns()
    );
    for note in subjects.iter().filter_map(|x| x.note()) {
        println!("{note}");
    }
    for ((scenario, &iters), _) in SCENARIOS
        .iter()
        .zip(work_iters)
        .zip(selected)
        .filter(|(_, selected)| **selected)
    {
        if iters > 0 {
            println!(
                "work in ({}): {iters} iterations of the busy loop ({:.2} ns each, \
                 calibrated) for ~{}; measured: {} per {}",
                scenario.id,
                work_loop.ns_per_iter,
                fmt::ns(scenario.workload.work_ns() as f64),
                fmt::ns(work_loop.check(iters)),
                if scenario.workload.is_read_heavy() {
                    "read (inside the read lock)"
                } else {
                    "operation (after the unlock)"
                }
            );
        }
    }
}

/// The per-scenario tables and the summary. `ops[s][l]`: N per worker of scenario `s`
/// and lock `l`; `samples[s][l]`: its runs (none for a lock not in the lineup);
/// `selected[s]`: was scenario `s` run?
pub fn results(
    subjects: &[Box<dyn Subject>],
    ops: &[Vec<u64>],
    samples: &[Vec<Vec<Sample>>],
    runs: usize,
    selected: &[bool],
) {
    println!(
        "\n{} run{} per cell, median shown; range = slowest..fastest run; ratios: shmsem \
         throughput / baseline, within each run (above 1x shmsem is faster); read-heavy \
         scenarios: shmsem rwlock throughput / the others'",
        runs,
        if runs == 1 { "" } else { "s" }
    );
    println!(
        "max wait: the longest single acquisition (clock before lock .. inside), worst \
         worker, median over runs; with more workers than CPUs it includes waiting for a CPU"
    );
    let medians: Vec<Vec<f64>> = SCENARIOS
        .iter()
        .enumerate()
        .map(|(s, scenario)| match selected[s] {
            true => scenario_table(scenario, subjects, &ops[s], &samples[s]),
            false => Vec::new(),
        })
        .collect();
    // The summary: throughput, scenarios x locks ("-": not in that scenario's lineup).
    let label_width = SCENARIOS
        .iter()
        .map(|scenario| scenario.id.len() + scenario.title.len() + 3)
        .fold(34, usize::max);
    let widths: Vec<usize> = subjects
        .iter()
        .map(|x| x.names().short.len().max(10))
        .collect();
    println!("\nsummary: M ops/s (median)");
    print!("  {:<label_width$}", "scenario");
    for (subject, width) in subjects.iter().zip(&widths) {
        print!(" {:>width$}", subject.names().short);
    }
    println!();
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        if !selected[s] {
            continue;
        }
        let lineup = scenario.lineup(subjects);
        print!(
            "  {:<label_width$}",
            format!("({}) {}", scenario.id, scenario.title)
        );
        for (l, width) in widths.iter().enumerate() {
            let cell = if lineup.contains(&l) {
                fmt::mops(medians[s][l])
            } else {
                "-".into()
            };
            print!(" {cell:>width$}");
        }
        println!();
    }
    fairness(subjects, samples, selected);
}

/// The fairness tables (issue 15: "the worst wait of any process stays within 10x the
/// median"), one per contended mutex scenario.
fn fairness(subjects: &[Box<dyn Subject>], samples: &[Vec<Vec<Sample>>], selected: &[bool]) {
    println!(
        "\nfairness (contended mutex scenarios), median over runs (worst run in brackets):\n\
         median / p99 wait: of every acquisition of every worker of a run, pooled (before \
         lock .. inside, 16 buckets per power of two: within 6%); worst: the longest single \
         wait of any worker; worst/median: their ratio (the issue's bound: 10x; with more \
         workers than CPUs a holder preempted inside its critical section makes every \
         lock's worst a scheduler time slice); slowest mean: the highest of the workers' \
         mean waits; turns: operations each worker did while all competed (from the last \
         one's start to the first one's end), fewest / most (1.00: equal turns; -: no such \
         window, too few operations)"
    );
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        if !scenario.fairness() || !selected[s] {
            continue;
        }
        println!("\n({}) {}", scenario.id, scenario.title);
        println!(
            "  {:<22} {:>9} {:>9} {:>9} {:>18} {:>12} {:>12}",
            "lock", "median", "p99", "worst", "worst/median", "slowest mean", "turns"
        );
        for l in scenario.lineup(subjects) {
            let runs: Vec<Fairness> = samples[s][l].iter().filter_map(|x| x.fairness).collect();
            if runs.is_empty() {
                continue;
            }
            let of = |f: fn(&Fairness) -> f64| median(runs.iter().map(f).collect());
            let ratios: Vec<f64> = runs.iter().map(Fairness::worst_over_median).collect();
            let worst_ratio = ratios.iter().copied().fold(0.0, f64::max);
            let spreads: Vec<f64> = runs
                .iter()
                .map(|x| x.spread)
                .filter(|x| !x.is_nan())
                .collect();
            let turns = if spreads.is_empty() {
                "-".to_string()
            } else {
                let (worst_spread, _) = range(&spreads);
                format!("{:.2} ({:.2})", median(spreads), worst_spread)
            };
            println!(
                "  {:<22} {:>9} {:>9} {:>9} {:>18} {:>12} {:>12}{}",
                subjects[l].names().name,
                fmt::ns(of(|x| x.median_ns)),
                fmt::ns(of(|x| x.p99_ns)),
                fmt::ns(of(|x| x.worst_ns as f64)),
                format!("{:.0}x ({:.0}x)", median(ratios), worst_ratio),
                fmt::ns(of(|x| x.slowest_mean_ns)),
                turns,
                if worst_ratio > 10.0 { "  > 10x" } else { "" }
            );
        }
    }
}

/// One scenario's table and ratio line; returns the median M ops/s per lock (0 for
/// those not in its lineup).
fn scenario_table(
    scenario: &Scenario,
    subjects: &[Box<dyn Subject>],
    ops: &[u64],
    samples: &[Vec<Sample>],
) -> Vec<f64> {
    let mut medians = vec![0f64; subjects.len()];
    let lineup = scenario.lineup(subjects);
    println!(
        "\n({}) {}: {} worker{}, each doing {}",
        scenario.id,
        scenario.title,
        scenario.workers(),
        if scenario.workers() == 1 { "" } else { "s" },
        scenario.workload.describe()
    );
    println!(
        "  {:<22} {:>10} {:>9} {:>17} {:>9} {:>10}",
        "lock", "N/worker", "M ops/s", "range", "ns/op", "max wait"
    );
    for &l in &lineup {
        let subject = &subjects[l];
        let runs = &samples[l];
        let mops: Vec<f64> = runs.iter().map(Sample::mops).collect();
        let (lo, hi) = range(&mops);
        let m = median(mops);
        medians[l] = m;
        let wait = if scenario.timed {
            fmt::ns(median(
                runs.iter()
                    .map(|r| r.max_wait_ns.unwrap_or(0) as f64)
                    .collect(),
            ))
        } else {
            "-".into()
        };
        let capped = runs.iter().filter(|r| r.capped).count();
        println!(
            "  {:<22} {:>10} {:>9} {:>17} {:>9.0} {:>10}{}",
            subject.names().name,
            ops[l],
            fmt::mops(m),
            format!("{}..{}", fmt::mops(lo), fmt::mops(hi)),
            1e3 / m,
            wait,
            if capped > 0 {
                format!("  ({capped} capped)")
            } else {
                String::new()
            }
        );
    }
    let name = |l: usize| match scenario.workload {
        Workload::Increment { .. } => subjects[l].names().short,
        Workload::ReadMostly { .. } => subjects[l].names().label,
    };
    let first = lineup[0];
    let ratios: Vec<String> = lineup[1..]
        .iter()
        .map(|&l| {
            let per_run: Vec<f64> = samples[first]
                .iter()
                .zip(&samples[l])
                .map(|(a, b)| a.mops() / b.mops())
                .collect();
            format!("{} / {} = {:.2}x", name(first), name(l), median(per_run))
        })
        .collect();
    println!("  {}", ratios.join(", "));
    medians
}

/// The notes after the summary: capped runs, if any, and what was checked.
pub fn footer(samples: &[Vec<Vec<Sample>>], started: Instant, run_cap: Duration) {
    let any_capped = samples.iter().flatten().flatten().any(|x| x.capped);
    if any_capped {
        println!(
            "\n(k capped): k runs stopped at the {:.1?} cap before doing N ops per worker: the \
             lock ran over 3x slower than in its fastest calibration probe (a second regime, \
             e.g. a convoy, or a noisy machine); their throughput is still ops done / time",
            run_cap
        );
    }
    let tally = |read_heavy: bool| {
        let runs = SCENARIOS
            .iter()
            .zip(samples)
            .filter(|(scenario, _)| scenario.workload.is_read_heavy() == read_heavy)
            .flat_map(|(_, cells)| cells.iter().flatten());
        runs.fold((0u64, 0u64), |(ops, writes), x| {
            (ops + x.ops, writes + x.writes)
        })
    };
    let (checked, _) = tally(false);
    let (rw_ops, rw_writes) = tally(true);
    if checked > 0 {
        println!("\nevery run's counter checked exact ({checked} increments in all)");
    }
    if rw_ops > 0 {
        println!(
            "read-heavy runs: every write count checked exact ({rw_writes} writes in all), \
             and none of their {} reads and {rw_writes} writes found the record torn",
            rw_ops - rw_writes,
        );
    }
    println!("took {:.0?}", started.elapsed());
}
