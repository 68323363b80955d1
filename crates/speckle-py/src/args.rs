//! The arguments of `open_device` and `open_projector`, checked: device SPECs, dimensions,
//! seeds, encodings and config overrides. Nothing is cast silently: a `bool` is not an integer,
//! a float is not a dimension, and a string override value stays a string.
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use speckle_devices::{overrides, DeviceSpec, Encoding};
use toml::{Table, Value};

use crate::errors::SpeckleErr;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_string())
}

/// An integer argument (a Python `int` or an object with `__index__`, never a `bool` or a
/// `float`), as `i128` so that every Python int that matters is range-checked, not wrapped.
fn integer(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<i128> {
    if obj.is_instance_of::<PyBool>() || obj.is_instance_of::<PyFloat>() {
        return Err(SpeckleErr::input(format!(
            "{name} must be an integer, got {}",
            type_name(obj)
        ))
        .into());
    }
    let index = if obj.is_instance_of::<PyInt>() {
        obj.clone()
    } else {
        match obj.call_method0("__index__") {
            Ok(i) => i,
            Err(_) => {
                return Err(SpeckleErr::input(format!(
                    "{name} must be an integer, got {}",
                    type_name(obj)
                ))
                .into())
            }
        }
    };
    index.extract::<i128>().map_err(|_| {
        SpeckleErr::input(format!("{name} = {index} is out of range for an integer")).into()
    })
}

/// A dimension: an integer of at least 1.
pub fn dimension(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    let v = integer(obj, name)?;
    match usize::try_from(v) {
        Ok(d) if d >= 1 => Ok(d),
        _ => Err(SpeckleErr::input(format!("{name} must be at least 1, got {v}")).into()),
    }
}

/// A seed: an integer in `0 ..= 2^64 − 1`.
pub fn seed(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    unsigned(obj, "seed")
}

/// An integer in `0 ..= 2^64 − 1` (a seed, a frame index).
pub fn unsigned(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    let v = integer(obj, name)?;
    u64::try_from(v).map_err(|_| {
        SpeckleErr::input(format!("{name} must be an integer in 0..=2^64-1, got {v}")).into()
    })
}

fn text(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<String> {
    obj.cast::<PyString>()
        .map_err(|_| SpeckleErr::input(format!("{name} must be a str, got {}", type_name(obj))))?
        .extract::<String>()
}

/// A device SPEC, parsed as `--device` is.
pub fn spec(obj: &Bound<'_, PyAny>) -> PyResult<DeviceSpec> {
    let s = text(obj, "spec")?;
    s.parse()
        .map_err(|e| SpeckleErr::input(format!("invalid value '{s}' for spec: {e}")).into())
}

/// An encoding, parsed as `--encoding` is.
pub fn encoding(obj: &Bound<'_, PyAny>) -> PyResult<(Encoding, String)> {
    let s = text(obj, "encoding")?;
    match s.parse() {
        Ok(e) => Ok((e, s)),
        Err(e) => Err(SpeckleErr::input(format!("invalid value '{s}' for encoding: {e}")).into()),
    }
}

/// A Python value as a TOML value: `bool`, `int`, `float`, `str`, lists and tuples of them, and
/// dicts with `str` keys (tables).
fn toml_value(obj: &Bound<'_, PyAny>, item: &str) -> PyResult<Value> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Boolean(obj.extract()?));
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Value::String(obj.extract()?));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Value::Float(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() || obj.hasattr("__index__")? {
        let v = integer(obj, &format!("override {item}"))?;
        return i64::try_from(v).map(Value::Integer).map_err(|_| {
            SpeckleErr::input(format!(
                "override {item}: {v} does not fit a 64-bit integer"
            ))
            .into()
        });
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for v in obj.try_iter()? {
            items.push(toml_value(&v?, item)?);
        }
        return Ok(Value::Array(items));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut table = Table::new();
        for (k, v) in dict.iter() {
            let key = text(&k, &format!("a key of override {item}"))?;
            table.insert(key.clone(), toml_value(&v, &format!("{item}.{key}"))?);
        }
        return Ok(Value::Table(table));
    }
    Err(SpeckleErr::input(format!(
        "override {item}: a value of type {} is not a config value (bool, int, float, str, list or dict)",
        type_name(obj)
    ))
    .into())
}

/// Config overrides: `None`, a dict of dotted keys to values (`{"camera.bits": 12}`, values
/// kept as their Python type), or a list of `"section.key=value"` strings parsed exactly as
/// `--set` parses them.
pub fn overrides(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Table> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Table::new());
    };
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut table = Table::new();
        for (k, v) in dict.iter() {
            let key = text(&k, "an override key")?;
            let value = toml_value(&v, &key)?;
            overrides::set_dotted(&mut table, &key, value, &key)
                .map_err(|e| SpeckleErr::input(e.to_string()))?;
        }
        return Ok(table);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for item in obj.try_iter()? {
            items.push(text(&item?, "an override")?);
        }
        return overrides::parse(&items).map_err(|e| SpeckleErr::input(e.to_string()).into());
    }
    Err(SpeckleErr::input(format!(
        "overrides must be a dict of 'section.key' to values or a list of 'section.key=value' strings, got {}",
        type_name(obj)
    ))
    .into())
}
