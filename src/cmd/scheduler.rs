//! `speckle sweep --shard auto`: the shard and the number of parallel runs from a cluster
//! scheduler's environment.
//!
//! * Slurm job arrays: `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT` and `SLURM_ARRAY_TASK_MIN`
//!   (with `SLURM_ARRAY_TASK_STEP` and `SLURM_ARRAY_TASK_MAX` when set), so `--array=0-7`,
//!   `--array=1-8` and `--array=0-14:2` all make shards 0 to 7 of 8.
//! * Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX`, with the count from `--shards N` or
//!   [`SHARDS_ENV`] (set it to the Job's `completions`).
//! * `--jobs` defaults to `SLURM_CPUS_PER_TASK` when set.
//!
//! Everything here is a pure function of an environment lookup, so that tests do not touch the
//! process environment.
use std::str::FromStr;

use speckle_runs::sweep::Shard;

/// The shard count of a Kubernetes Indexed Job (its `completions`), when `--shards` is not given.
pub const SHARDS_ENV: &str = "SPECKLE_SHARDS";

/// The value of `--shard`: `I/N`, or `auto` (from the scheduler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    /// From the scheduler's environment.
    Auto,
    /// Given on the command line.
    Fixed(Shard),
}

impl FromStr for ShardArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "auto" {
            Ok(Self::Auto)
        } else {
            s.parse()
                .map(Self::Fixed)
                .map_err(|e| format!("{e} (or auto)"))
        }
    }
}

/// A variable of the environment, `None` when unset or blank.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// A whole-number variable, `None` when unset.
fn number(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<usize>, String> {
    var(env, name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("{name}={v:?} is not a whole number"))
        })
        .transpose()
}

/// A whole-number variable that must be set because `because` is.
fn required(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    because: &str,
) -> Result<usize, String> {
    number(env, name)?.ok_or_else(|| format!("{because} is set but {name} is not"))
}

/// Resolves `--shard` (and `--shards`) into a shard, with a description of where it came from
/// for the log (`None` when the command line gave it).
pub fn resolve_shard(
    arg: Option<ShardArg>,
    shards: Option<usize>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Shard, Option<String>), String> {
    if shards == Some(0) {
        return Err("--shards must be at least 1".into());
    }
    match arg {
        None | Some(ShardArg::Fixed(_)) if shards.is_some() => {
            Err("--shards N goes with --shard auto".into())
        }
        None => Ok((Shard::default(), None)),
        Some(ShardArg::Fixed(shard)) => Ok((shard, None)),
        Some(ShardArg::Auto) => {
            let slurm = var(env, "SLURM_ARRAY_TASK_ID").is_some();
            let kubernetes = var(env, "JOB_COMPLETION_INDEX").is_some();
            let shards = match shards {
                Some(n) => Some((n, format!("--shards {n}"))),
                None => number(env, SHARDS_ENV)?.map(|n| (n, format!("{SHARDS_ENV}={n}"))),
            };
            if shards.as_ref().is_some_and(|(n, _)| *n == 0) {
                return Err(format!("{SHARDS_ENV} must be at least 1"));
            }
            match (slurm, kubernetes) {
                (true, true) => Err(
                    "--shard auto: both SLURM_ARRAY_TASK_ID and JOB_COMPLETION_INDEX are set; \
                     give --shard I/N"
                        .into(),
                ),
                (true, false) => slurm_shard(env, shards),
                (false, true) => kubernetes_shard(env, shards),
                (false, false) if var(env, "SLURM_JOB_ID").is_some() => Err(
                    "--shard auto: this Slurm job is not an array (SLURM_ARRAY_TASK_ID is not \
                     set); submit it with sbatch --array=0-N"
                        .into(),
                ),
                (false, false) => Err(
                    "--shard auto needs a Slurm job array (SLURM_ARRAY_TASK_ID) or a Kubernetes \
                     Indexed Job (JOB_COMPLETION_INDEX), and neither is set; give --shard I/N"
                        .into(),
                ),
            }
        }
    }
}

fn slurm_shard(
    env: &dyn Fn(&str) -> Option<String>,
    shards: Option<(usize, String)>,
) -> Result<(Shard, Option<String>), String> {
    const ID: &str = "SLURM_ARRAY_TASK_ID";
    let id = required(env, ID, ID)?;
    let count = required(env, "SLURM_ARRAY_TASK_COUNT", ID)?;
    let min = required(env, "SLURM_ARRAY_TASK_MIN", ID)?;
    let step = number(env, "SLURM_ARRAY_TASK_STEP")?.unwrap_or(1);
    for (name, v) in [
        ("SLURM_ARRAY_TASK_COUNT", count),
        ("SLURM_ARRAY_TASK_STEP", step),
    ] {
        if v == 0 {
            return Err(format!("{name}=0: it must be at least 1"));
        }
    }
    let last = (count - 1)
        .checked_mul(step)
        .and_then(|s| s.checked_add(min));
    let max = number(env, "SLURM_ARRAY_TASK_MAX")?;
    if last.is_none() || max.is_some_and(|m| Some(m) != last) {
        return Err(format!(
            "the Slurm array's {count} tasks are not evenly spaced from {min} to {} \
             (SLURM_ARRAY_TASK_MIN, _MAX, _STEP): submit --array=A-B or --array=A-B:S",
            max.map_or("?".into(), |m| m.to_string())
        ));
    }
    let index = id
        .checked_sub(min)
        .filter(|d| d % step == 0)
        .map(|d| d / step)
        .filter(|&i| i < count)
        .ok_or_else(|| {
            format!(
                "{ID}={id} is not a task of the array {min}-{}:{step}",
                last.unwrap_or(min)
            )
        })?;
    if let Some((n, from)) = shards {
        if n != count {
            return Err(format!(
                "{from} disagrees with the Slurm array's {count} tasks: resubmit the whole \
                 array (finished points are skipped)"
            ));
        }
    }
    let array = if step == 1 {
        format!("{min}-{}", last.unwrap_or(min))
    } else {
        format!("{min}-{}:{step}", last.unwrap_or(min))
    };
    Ok((
        Shard { index, count },
        Some(format!("Slurm array task {id} of {array}")),
    ))
}

fn kubernetes_shard(
    env: &dyn Fn(&str) -> Option<String>,
    shards: Option<(usize, String)>,
) -> Result<(Shard, Option<String>), String> {
    const INDEX: &str = "JOB_COMPLETION_INDEX";
    let index = required(env, INDEX, INDEX)?;
    let (count, from) = shards.ok_or_else(|| {
        format!(
            "{INDEX} is set but the shard count is not: give --shards N or set {SHARDS_ENV} \
             (the Job's completions)"
        )
    })?;
    if index >= count {
        return Err(format!(
            "{INDEX}={index} is not below the shard count ({from}): set it to the Job's \
             completions"
        ));
    }
    Ok((
        Shard { index, count },
        Some(format!("Kubernetes completion index {index} of {from}")),
    ))
}

/// Runs in parallel: `--jobs`, else `SLURM_CPUS_PER_TASK` when set, else `cores`. Returns the
/// number and, when the scheduler gave it, where it came from.
pub fn resolve_jobs(
    jobs: Option<usize>,
    env: &dyn Fn(&str) -> Option<String>,
    cores: usize,
) -> Result<(usize, Option<String>), String> {
    const CPUS: &str = "SLURM_CPUS_PER_TASK";
    match jobs {
        Some(0) => Err("--jobs must be at least 1".into()),
        Some(j) => Ok((j, None)),
        None => match number(env, CPUS)? {
            Some(0) => Err(format!("{CPUS}=0: a task needs at least one CPU")),
            Some(n) => Ok((n, Some(format!("{CPUS}={n}")))),
            None => Ok((cores.max(1), None)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment made of `NAME=value` pairs.
    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn auto(pairs: &[(&str, &str)], shards: Option<usize>) -> Result<Shard, String> {
        resolve_shard(Some(ShardArg::Auto), shards, &env(pairs)).map(|(s, _)| s)
    }

    fn slurm(id: &str, count: &str, min: &str) -> Vec<(&'static str, String)> {
        vec![
            ("SLURM_JOB_ID", "77".into()),
            ("SLURM_ARRAY_TASK_ID", id.into()),
            ("SLURM_ARRAY_TASK_COUNT", count.into()),
            ("SLURM_ARRAY_TASK_MIN", min.into()),
        ]
    }

    fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, s)| (*k, s.as_str())).collect()
    }

    fn shard(index: usize, count: usize) -> Shard {
        Shard { index, count }
    }

    #[test]
    fn slurm_arrays_starting_at_zero_or_one_or_with_a_step_give_the_same_shards() {
        for i in 0..3 {
            let zero = slurm(&i.to_string(), "3", "0");
            assert_eq!(auto(&pairs(&zero), None), Ok(shard(i, 3)));
            let one = slurm(&(i + 1).to_string(), "3", "1");
            assert_eq!(auto(&pairs(&one), None), Ok(shard(i, 3)));
            let mut stepped = slurm(&(10 + 5 * i).to_string(), "3", "10");
            stepped.push(("SLURM_ARRAY_TASK_STEP", "5".into()));
            stepped.push(("SLURM_ARRAY_TASK_MAX", "20".into()));
            assert_eq!(auto(&pairs(&stepped), None), Ok(shard(i, 3)));
        }
        let (s, from) = resolve_shard(
            Some(ShardArg::Auto),
            None,
            &env(&pairs(&slurm("3", "3", "1"))),
        )
        .unwrap();
        assert_eq!(s, shard(2, 3));
        assert_eq!(from.unwrap(), "Slurm array task 3 of 1-3");
        // --shards (or SPECKLE_SHARDS) must agree with the array.
        let s = slurm("0", "3", "0");
        assert_eq!(auto(&pairs(&s), Some(3)), Ok(shard(0, 3)));
        let e = auto(&pairs(&s), Some(4)).unwrap_err();
        assert!(
            e.contains("--shards 4 disagrees") && e.contains("3 tasks"),
            "{e}"
        );
    }

    #[test]
    fn kubernetes_index_with_the_count_from_shards_or_the_environment() {
        for i in 0..4 {
            let idx = i.to_string();
            let k = [("JOB_COMPLETION_INDEX", idx.as_str())];
            assert_eq!(auto(&k, Some(4)), Ok(shard(i, 4)));
            let k = [("JOB_COMPLETION_INDEX", idx.as_str()), (SHARDS_ENV, "4")];
            assert_eq!(auto(&k, None), Ok(shard(i, 4)));
        }
        // --shards wins over the environment.
        let k = [("JOB_COMPLETION_INDEX", "1"), (SHARDS_ENV, "4")];
        assert_eq!(auto(&k, Some(2)), Ok(shard(1, 2)));
        let e = auto(&[("JOB_COMPLETION_INDEX", "1")], None).unwrap_err();
        assert!(e.contains("--shards N") && e.contains(SHARDS_ENV), "{e}");
        let e = auto(&[("JOB_COMPLETION_INDEX", "4")], Some(4)).unwrap_err();
        assert!(e.contains("JOB_COMPLETION_INDEX=4"), "{e}");
    }

    #[test]
    fn no_scheduler_or_bad_values_are_one_line_errors() {
        let e = auto(&[], None).unwrap_err();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"),
            "{e}"
        );
        // Blank counts as unset.
        assert!(auto(&[("JOB_COMPLETION_INDEX", " ")], Some(2)).is_err());
        let e = auto(&[("SLURM_JOB_ID", "5")], None).unwrap_err();
        assert!(e.contains("not an array"), "{e}");
        let both = [
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("JOB_COMPLETION_INDEX", "0"),
        ];
        assert!(auto(&both, Some(2)).unwrap_err().contains("both"));
        let bad: [(&[(&str, &str)], &str); 9] = [
            (&[("SLURM_ARRAY_TASK_ID", "x")], "SLURM_ARRAY_TASK_ID=\"x\""),
            (
                &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "0")],
                "SLURM_ARRAY_TASK_COUNT is not",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "1"),
                    ("SLURM_ARRAY_TASK_COUNT", "2"),
                ],
                "SLURM_ARRAY_TASK_MIN is not",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "0"),
                    ("SLURM_ARRAY_TASK_COUNT", "2"),
                    ("SLURM_ARRAY_TASK_MIN", "1"),
                ],
                "not a task of the array 1-2",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "3"),
                    ("SLURM_ARRAY_TASK_COUNT", "2"),
                    ("SLURM_ARRAY_TASK_MIN", "1"),
                ],
                "not a task",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "0"),
                    ("SLURM_ARRAY_TASK_COUNT", "0"),
                    ("SLURM_ARRAY_TASK_MIN", "0"),
                ],
                "at least 1",
            ),
            // --array=1,3,7: three tasks that are not evenly spaced.
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "3"),
                    ("SLURM_ARRAY_TASK_COUNT", "3"),
                    ("SLURM_ARRAY_TASK_MIN", "1"),
                    ("SLURM_ARRAY_TASK_MAX", "7"),
                ],
                "not evenly spaced",
            ),
            (
                &[("JOB_COMPLETION_INDEX", "-1")],
                "JOB_COMPLETION_INDEX=\"-1\"",
            ),
            (
                &[("JOB_COMPLETION_INDEX", "0"), (SHARDS_ENV, "0")],
                "at least 1",
            ),
        ];
        for (pairs, want) in bad {
            let e = auto(pairs, None).unwrap_err();
            assert!(e.contains(want), "{pairs:?}: {e}");
            assert!(!e.contains('\n'));
        }
        // --shards only goes with auto.
        let fixed = Some(ShardArg::Fixed(shard(0, 2)));
        assert!(resolve_shard(fixed, Some(2), &env(&[])).is_err());
        assert!(resolve_shard(None, Some(2), &env(&[])).is_err());
        assert!(resolve_shard(Some(ShardArg::Auto), Some(0), &env(&[])).is_err());
        // Without --shard the environment is not read.
        let s = slurm("2", "3", "0");
        assert_eq!(
            resolve_shard(None, None, &env(&pairs(&s))),
            Ok((shard(0, 1), None))
        );
        assert_eq!(
            resolve_shard(fixed, None, &env(&pairs(&s))),
            Ok((shard(0, 2), None))
        );
    }

    #[test]
    fn shard_arguments_parse() {
        assert_eq!("auto".parse(), Ok(ShardArg::Auto));
        assert_eq!("1/4".parse(), Ok(ShardArg::Fixed(shard(1, 4))));
        let e = "4/4".parse::<ShardArg>().unwrap_err();
        assert!(e.contains("I < N") && e.contains("auto"), "{e}");
        assert!("autox".parse::<ShardArg>().is_err());
    }

    #[test]
    fn jobs_default_to_the_cpus_slurm_gave_the_task() {
        let cpus = env(&[("SLURM_CPUS_PER_TASK", "4")]);
        assert_eq!(resolve_jobs(None, &cpus, 16).unwrap().0, 4);
        assert_eq!(resolve_jobs(Some(2), &cpus, 16), Ok((2, None)));
        assert_eq!(resolve_jobs(None, &env(&[]), 16), Ok((16, None)));
        assert!(resolve_jobs(Some(0), &cpus, 16).is_err());
        for bad in ["0", "two", "-1"] {
            let e = resolve_jobs(None, &env(&[("SLURM_CPUS_PER_TASK", bad)]), 16).unwrap_err();
            assert!(e.contains("SLURM_CPUS_PER_TASK"), "{e}");
        }
    }
}
