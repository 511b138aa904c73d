// Shared by the data benches.

/// CPU seconds used so far by this process and by its waited-for children (user + system),
/// from `/proc/self/stat` (Linux; clock ticks taken as 1/100 s). `None` elsewhere. On a busy
/// machine wall-clock rates depend on what else runs; CPU time per image much less so.
#[allow(dead_code)] // not every bench measures CPU time
pub fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.len() == 4).then(|| ((f[0] + f[1]) / 100.0, (f[2] + f[3]) / 100.0))
}

/// The one-line JSON object a reference script prints last on stdout (`None` when it printed
/// none, e.g. because it failed).
#[allow(dead_code)] // not every bench reads a reference
pub fn reference_json(stdout: &str) -> Option<serde_json::Value> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .filter(serde_json::Value::is_object)
}
