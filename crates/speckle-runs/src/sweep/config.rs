//! The sweep file: a base run config, the points to run, and how to expand them.
//!
//! A point is a list of *settings* (full dotted run-config keys with TOML values, applied to the
//! base config the way `--set` edits are) and *labels* (extra result columns that are not config
//! keys, such as `variant` in the bottleneck study). Points come from blocks: constants (`set`),
//! cartesian grids (`grid`), lists taken together (`zip`) and explicit lists (`points`). The top
//! level is one block; each `[[groups]]` entry is another, crossed with the top level, so a study
//! can combine sub-grids that leave the other keys at their defaults.

use speckle_devices::overrides;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::{Table, Value};

use super::error::{FileOp, SweepError};
use super::point::PointError;

/// Key-value settings in application order.
type Settings = Vec<(String, Value)>;
/// Keys with lists of values (a grid, zip or keep table), in order.
type ValueLists = Vec<(String, Vec<Value>)>;

/// Raw file layout; see the module docs and `configs/noise-sweep.toml` for an example.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    name: Option<String>,
    description: Option<String>,
    /// A path to a run config (relative to the sweep file) or an inline run-config table.
    base: Option<Value>,
    #[serde(default)]
    labels: Vec<String>,
    set: Option<Table>,
    grid: Option<Table>,
    zip: Option<Table>,
    points: Option<Vec<Table>>,
    #[serde(default)]
    groups: Vec<RawGroup>,
    quick: Option<RawQuick>,
    report: Option<RawReport>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    set: Option<Table>,
    grid: Option<Table>,
    zip: Option<Table>,
    points: Option<Vec<Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuick {
    set: Option<Table>,
    keep: Option<Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    params: Option<Vec<String>>,
}

/// One block of points: constants × explicit points × zipped lists × grid.
#[derive(Debug, Clone, Default)]
struct Block {
    set: Settings,
    points: Vec<Settings>,
    zip: ValueLists,
    grid: ValueLists,
}

impl Block {
    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.points.is_empty() && self.zip.is_empty() && self.grid.is_empty()
    }

    /// Every key the block sets, once.
    fn keys(&self) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self.set.iter().map(|(k, _)| k.clone()).collect();
        keys.extend(self.zip.iter().map(|(k, _)| k.clone()));
        keys.extend(self.grid.iter().map(|(k, _)| k.clone()));
        for p in &self.points {
            keys.extend(p.iter().map(|(k, _)| k.clone()));
        }
        keys
    }

    /// The block's rows in a stable order: explicit points outermost, then zip rows, then the
    /// grid with its last key varying fastest.
    fn rows(&self) -> Vec<Settings> {
        let explicit: Vec<Settings> = if self.points.is_empty() {
            vec![Vec::new()]
        } else {
            self.points.clone()
        };
        let zip_len = self.zip.first().map_or(1, |(_, v)| v.len());
        let grid_len: usize = self.grid.iter().map(|(_, v)| v.len()).product();
        let mut rows = Vec::new();
        for p in &explicit {
            for z in 0..zip_len {
                for mut g in 0..grid_len {
                    let mut row = self.set.clone();
                    row.extend(p.iter().cloned());
                    for (k, vals) in &self.zip {
                        row.push((k.clone(), vals[z].clone()));
                    }
                    // Mixed-radix decomposition of g, last grid key fastest.
                    let mut picks = vec![0; self.grid.len()];
                    for (i, (_, vals)) in self.grid.iter().enumerate().rev() {
                        picks[i] = g % vals.len();
                        g /= vals.len();
                    }
                    for ((k, vals), &i) in self.grid.iter().zip(&picks) {
                        row.push((k.clone(), vals[i].clone()));
                    }
                    rows.push(row);
                }
            }
        }
        rows
    }
}

/// A parsed sweep file.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Sweep name (the file stem when the file gives none).
    pub name: String,
    /// Free text shown at the top of the report.
    pub description: String,
    /// The base run config every point starts from (an empty table means the run defaults).
    pub base: Table,
    /// Column names that are labels, not config keys.
    pub labels: Vec<String>,
    /// Parameters the report plots against; `None` means every swept key.
    pub report_params: Option<Vec<String>>,
    top: Block,
    groups: Vec<(String, Block)>,
    quick_set: Settings,
    quick_keep: ValueLists,
}

/// One expanded point of a sweep.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepPoint {
    /// Position in the full expansion (stable for a given sweep file); shards take
    /// `index % N == I`.
    pub index: usize,
    /// Stable id: a hash of the point's settings and labels (the run directory's name).
    pub id: String,
    /// Group name, when the sweep has groups.
    pub group: Option<String>,
    /// Config settings of the point (full dotted keys), in the order they are applied.
    pub settings: Vec<(String, Value)>,
    /// Label columns of the point.
    pub labels: Vec<(String, Value)>,
}

impl SweepPoint {
    /// `key=value, …` of the point's settings and labels, for messages.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .labels
            .iter()
            .chain(&self.settings)
            .map(|(k, v)| format!("{k}={}", canonical(v)))
            .collect();
        if parts.is_empty() {
            "(base config)".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// Value of a setting or label, if the point sets it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.labels
            .iter()
            .chain(&self.settings)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The base config with the point's settings applied (labels are not applied).
    pub fn resolve(&self, base: &Table) -> Result<Table, SweepError> {
        let mut table = base.clone();
        for (key, value) in &self.settings {
            overrides::set_dotted(&mut table, key, value.clone(), key).map_err(|e| {
                SweepError::Point {
                    index: self.index,
                    settings: self.describe(),
                    source: PointError::Setting(e),
                }
            })?;
        }
        Ok(table)
    }
}

/// A sweep's name names its default output folder, `sweeps/<name>`: it must stay a single
/// folder name there (no `/`, `\`, leading `.` as in `..`, no control characters).
fn check_name(name: String) -> Result<String, SweepError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| matches!(c, '/' | '\\') || c.is_control());
    if plain {
        Ok(name)
    } else {
        Err(SweepError::Config(format!(
            "name = {name:?} must be a plain folder name (no '/', '\\', leading '.'): the sweep writes into sweeps/<name>"
        )))
    }
}

impl SweepConfig {
    /// Reads and parses a sweep file; a relative `base` path is resolved against its folder.
    pub fn load(path: &Path) -> Result<Self, SweepError> {
        let text = std::fs::read_to_string(path).map_err(SweepError::io(FileOp::Read, path))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("sweep")
            .to_string();
        Self::parse(&text, dir, &stem).map_err(|e| SweepError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses sweep text. `base_dir` resolves a relative `base` path; `default_name` names a
    /// sweep that has no `name`.
    pub fn parse(text: &str, base_dir: &Path, default_name: &str) -> Result<Self, SweepError> {
        let raw: RawSweep = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let base = base_config(raw.base, base_dir)?;
        check_labels(&raw.labels, &base)?;
        let top = block("top level", raw.set, raw.grid, raw.zip, raw.points)?;
        let groups = groups(raw.groups, &top)?;
        if groups.is_empty() && top.points.is_empty() && top.zip.is_empty() && top.grid.is_empty() {
            return Err(SweepError::Config(
                "the sweep is empty: give a non-empty [grid], [zip], [[points]] or [[groups]]"
                    .into(),
            ));
        }
        let (quick_set, quick_keep) = match raw.quick {
            None => (Vec::new(), Vec::new()),
            Some(q) => quick(q)?,
        };
        Ok(Self {
            name: check_name(raw.name.unwrap_or_else(|| default_name.to_string()))?,
            description: raw.description.unwrap_or_default(),
            base,
            labels: raw.labels,
            report_params: raw.report.and_then(|r| r.params),
            top,
            groups,
            quick_set,
            quick_keep,
        })
    }

    /// Expands the sweep into its points, in a stable order. With `quick`, the `[quick]` section's
    /// settings are added to every point and its `keep` lists filter the points.
    pub fn expand(&self, quick: bool) -> Result<Vec<SweepPoint>, SweepError> {
        let top_rows = self.top.rows();
        let mut rows: Vec<(Option<String>, Settings)> = Vec::new();
        if self.groups.is_empty() {
            rows.extend(top_rows.into_iter().map(|r| (None, r)));
        } else {
            for (name, g) in &self.groups {
                for grow in g.rows() {
                    for trow in &top_rows {
                        let mut row = trow.clone();
                        row.extend(grow.iter().cloned());
                        rows.push((Some(name.clone()), row));
                    }
                }
            }
        }
        let mut points = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (group, row) in rows {
            if quick {
                let dropped = self.quick_keep.iter().any(|(k, allowed)| {
                    row.iter()
                        .find(|(rk, _)| rk == k)
                        .is_some_and(|(_, v)| !allowed.contains(v))
                });
                if dropped {
                    continue;
                }
            }
            let (labels, mut settings): (Vec<_>, Vec<_>) =
                row.into_iter().partition(|(k, _)| self.labels.contains(k));
            if quick {
                for (k, v) in &self.quick_set {
                    settings.retain(|(sk, _)| sk != k);
                    settings.push((k.clone(), v.clone()));
                }
            }
            let id = point_id(group.as_deref(), &settings, &labels);
            let index = points.len();
            if let Some(first) = seen.insert(id.clone(), index) {
                let p = SweepPoint {
                    index,
                    id,
                    group,
                    settings,
                    labels,
                };
                return Err(SweepError::Config(format!(
                    "points {first} and {index} are the same ({}): remove the duplicate",
                    p.describe()
                )));
            }
            points.push(SweepPoint {
                index,
                id,
                group,
                settings,
                labels,
            });
        }
        if points.is_empty() {
            return Err(SweepError::Config(
                "no point is left after [quick.keep]".into(),
            ));
        }
        Ok(points)
    }

    /// Keys that are swept: labels first (in declared order), then every config key some point
    /// sets, except those set to one value everywhere (in order of first appearance).
    pub fn swept_keys(&self, points: &[SweepPoint]) -> Vec<String> {
        let mut keys: Vec<String> = self
            .labels
            .iter()
            .filter(|l| points.iter().any(|p| p.get(l).is_some()))
            .cloned()
            .collect();
        let mut values: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut order: Vec<&str> = Vec::new();
        for p in points {
            for (k, v) in &p.settings {
                if !values.contains_key(k.as_str()) {
                    order.push(k);
                }
                values.entry(k).or_default().insert(canonical(v));
            }
        }
        for k in order {
            let everywhere = points.iter().all(|p| p.get(k).is_some());
            if values[k].len() > 1 || !everywhere {
                keys.push(k.to_string());
            }
        }
        keys
    }

    /// A fingerprint of the base config (part of the sweep manifest, so a changed base config
    /// is noticed when resuming into an old output folder).
    pub fn base_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(canonical(&Value::Table(self.base.clone())).as_bytes());
        hex(&h.finalize()[..8])
    }
}

fn toml_error(text: &str, e: &toml::de::Error) -> SweepError {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let msg = e.message().replace('\n', " ");
    match line {
        Some(l) => SweepError::Config(format!("line {l}: {}", msg.trim())),
        None => SweepError::Config(msg.trim().to_string()),
    }
}

/// The base run config: none (the run defaults), an inline table, or a file relative to
/// `base_dir`.
fn base_config(base: Option<Value>, base_dir: &Path) -> Result<Table, SweepError> {
    match base {
        None => Ok(Table::new()),
        Some(Value::Table(t)) => Ok(t),
        Some(Value::String(p)) => {
            let path: PathBuf = base_dir.join(&p);
            let text =
                std::fs::read_to_string(&path).map_err(SweepError::io(FileOp::Read, &path))?;
            toml::from_str::<Table>(&text).map_err(|e| {
                SweepError::Config(format!(
                    "base config {}: {}",
                    path.display(),
                    toml_error(&text, &e)
                ))
            })
        }
        Some(_) => Err(SweepError::Config(
            "`base` must be a path to a run config or a table".into(),
        )),
    }
}

/// Labels are plain names that no run-config section uses.
fn check_labels(labels: &[String], base: &Table) -> Result<(), SweepError> {
    for l in labels {
        if l.is_empty() || l.contains('.') {
            return Err(SweepError::Config(format!(
                "label {l:?} must be a plain name without dots"
            )));
        }
        if base.contains_key(l) {
            return Err(SweepError::Config(format!(
                "label {l:?} is also a section of the run config"
            )));
        }
    }
    Ok(())
}

/// The `[[groups]]` blocks: distinct names, each with points, none setting a key of the top
/// level.
fn groups(raw: Vec<RawGroup>, top: &Block) -> Result<Vec<(String, Block)>, SweepError> {
    let mut groups = Vec::new();
    let mut names = BTreeSet::new();
    for g in raw {
        if !names.insert(g.name.clone()) {
            return Err(SweepError::Config(format!(
                "group name {:?} is used twice",
                g.name
            )));
        }
        let where_ = format!("group {:?}", g.name);
        let b = block(&where_, g.set, g.grid, g.zip, g.points)?;
        if b.is_empty() {
            return Err(SweepError::Config(format!("{where_} has no points")));
        }
        let clash: Vec<String> = b.keys().intersection(&top.keys()).cloned().collect();
        if let Some(k) = clash.first() {
            return Err(SweepError::Config(format!(
                "key {k:?} is set both at the top level and in {where_}"
            )));
        }
        groups.push((g.name, b));
    }
    Ok(groups)
}

/// The `[quick]` section: settings added to every point, and the values each key keeps.
fn quick(q: RawQuick) -> Result<(Settings, ValueLists), SweepError> {
    let set = q
        .set
        .map(|t| flatten_leaves("[quick.set]", &t))
        .transpose()?
        .unwrap_or_default();
    let keep = q
        .keep
        .map(|t| flatten_lists("[quick.keep]", &t, true, true))
        .transpose()?
        .unwrap_or_default();
    Ok((set, keep))
}

/// One block of points from its four parts (each optional), checked: no empty grid, zip or
/// points list, zip lists of equal lengths, and every key in one part only.
fn block(
    where_: &str,
    set: Option<Table>,
    grid: Option<Table>,
    zip: Option<Table>,
    points: Option<Vec<Table>>,
) -> Result<Block, SweepError> {
    let set = match set {
        Some(t) => flatten_leaves(&format!("{where_} set"), &t)?,
        None => Vec::new(),
    };
    let grid = match grid {
        Some(t) => {
            let g = flatten_lists(&format!("{where_} grid"), &t, false, true)?;
            if g.is_empty() {
                return Err(SweepError::Config(format!("{where_}: the grid is empty")));
            }
            g
        }
        None => Vec::new(),
    };
    let zip = match zip {
        Some(t) => {
            let z = flatten_lists(&format!("{where_} zip"), &t, false, false)?;
            if z.is_empty() {
                return Err(SweepError::Config(format!(
                    "{where_}: the zip table is empty"
                )));
            }
            let n = z[0].1.len();
            if let Some((k, v)) = z.iter().find(|(_, v)| v.len() != n) {
                return Err(SweepError::Config(format!(
                    "{where_}: zip lists must have equal lengths, but {:?} has {n} values and {k:?} has {}",
                    z[0].0,
                    v.len()
                )));
            }
            z
        }
        None => Vec::new(),
    };
    let points = match points {
        Some(list) => {
            if list.is_empty() {
                return Err(SweepError::Config(format!("{where_}: `points` is empty")));
            }
            list.iter()
                .enumerate()
                .map(|(i, t)| flatten_leaves(&format!("{where_} point {i}"), t))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    let b = Block {
        set,
        points,
        zip,
        grid,
    };
    // A key may come from only one part of a block.
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    let parts: [(&str, Vec<&str>); 3] = [
        ("set", b.set.iter().map(|(k, _)| k.as_str()).collect()),
        ("zip", b.zip.iter().map(|(k, _)| k.as_str()).collect()),
        ("grid", b.grid.iter().map(|(k, _)| k.as_str()).collect()),
    ];
    let point_keys: BTreeSet<&str> = b
        .points
        .iter()
        .flat_map(|p| p.iter().map(|(k, _)| k.as_str()))
        .collect();
    for (part, keys) in parts.iter().chain(std::iter::once(&(
        "points",
        point_keys.iter().copied().collect::<Vec<_>>(),
    ))) {
        for k in keys {
            if let Some(other) = owner.insert(k, part) {
                return Err(SweepError::Config(format!(
                    "{where_}: key {k:?} appears in both {other} and {part}"
                )));
            }
        }
    }
    Ok(b)
}

/// `prefix.key`, or `key` at the top.
pub(super) fn dotted(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Flattens a table of settings into (dotted key, leaf value); nested tables and quoted dotted
/// keys are equivalent.
fn flatten_leaves(where_: &str, t: &Table) -> Result<Settings, SweepError> {
    let mut out = Vec::new();
    fn walk(prefix: &str, t: &Table, out: &mut Settings) {
        for (k, v) in t {
            let key = dotted(prefix, k);
            match v {
                Value::Table(sub) => walk(&key, sub, out),
                other => out.push((key, other.clone())),
            }
        }
    }
    walk("", t, &mut out);
    check_keys(where_, &out)?;
    Ok(out)
}

/// Flattens a table of value lists (grid, zip, keep) into (dotted key, values).
fn flatten_lists(
    where_: &str,
    t: &Table,
    allow_empty: bool,
    unique: bool,
) -> Result<ValueLists, SweepError> {
    let mut out = Vec::new();
    fn walk(
        where_: &str,
        prefix: &str,
        t: &Table,
        allow_empty: bool,
        out: &mut ValueLists,
    ) -> Result<(), SweepError> {
        for (k, v) in t {
            let key = dotted(prefix, k);
            match v {
                Value::Table(sub) => walk(where_, &key, sub, allow_empty, out)?,
                Value::Array(vals) => {
                    if vals.is_empty() && !allow_empty {
                        return Err(SweepError::Config(format!(
                            "{where_}: key {key:?} has an empty list of values"
                        )));
                    }
                    out.push((key, vals.clone()));
                }
                other => {
                    return Err(SweepError::Config(format!(
                        "{where_}: key {key:?} must be a list of values, got {}",
                        canonical(other)
                    )))
                }
            }
        }
        Ok(())
    }
    walk(where_, "", t, allow_empty, &mut out)?;
    // Grid values must be distinct; zip lists may repeat a value (other lists tell rows apart).
    for (k, vals) in out.iter().filter(|_| unique) {
        let mut seen = BTreeSet::new();
        for v in vals {
            if !seen.insert(canonical(v)) {
                return Err(SweepError::Config(format!(
                    "{where_}: key {k:?} lists the value {} twice",
                    canonical(v)
                )));
            }
        }
    }
    let pairs: Settings = out
        .iter()
        .map(|(k, _)| (k.clone(), Value::Boolean(true)))
        .collect();
    check_keys(where_, &pairs)?;
    Ok(out)
}

fn check_keys(where_: &str, kv: &[(String, Value)]) -> Result<(), SweepError> {
    let mut seen = BTreeSet::new();
    for (k, _) in kv {
        if k.split('.').any(|s| s.is_empty()) {
            return Err(SweepError::Config(format!(
                "{where_}: key {k:?} has an empty part"
            )));
        }
        if !seen.insert(k.as_str()) {
            return Err(SweepError::Config(format!(
                "{where_}: key {k:?} is given twice"
            )));
        }
    }
    Ok(())
}

/// A canonical, version-independent text form of a TOML value: integers in decimal, floats in
/// Rust's shortest round-trip form, strings JSON-quoted, tables with sorted keys.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}")),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(canonical).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Table(t) => {
            let parts: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{k} = {}", canonical(v)))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// A value as a table cell: strings without quotes, everything else canonical.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => canonical(other),
    }
}

fn point_id(
    group: Option<&str>,
    settings: &[(String, Value)],
    labels: &[(String, Value)],
) -> String {
    let mut lines: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("set {k}={}", canonical(v)))
        .chain(
            labels
                .iter()
                .map(|(k, v)| format!("label {k}={}", canonical(v))),
        )
        .collect();
    lines.sort();
    if let Some(g) = group {
        lines.insert(0, format!("group {g}"));
    }
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize()[..6])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
