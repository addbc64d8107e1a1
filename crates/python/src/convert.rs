//! Values between Python and Rust: `None`, `bool`, `int` (signed 64-bit), `float`, `str`, `bytes`,
//! `list`/`tuple` and `dict` with `str` keys map to [`Value`] and back.

use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use strata_engine::{DiffEntry, MergeConflict, Value};

use crate::errors::{invalid, Failure};

/// Deepest nesting accepted (a list that contains itself would otherwise recurse forever).
const MAX_DEPTH: usize = 256;

/// Converts a Python object to a [`Value`], or says which part cannot be stored.
pub(crate) fn to_value(obj: &Bound<'_, PyAny>) -> Result<Value, Failure> {
    to_value_at(obj, 0)
}

fn to_value_at(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, Failure> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "value is nested more than {MAX_DEPTH} levels deep (does a list or dict contain itself?)"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.downcast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>().map(Value::Int).map_err(|_| {
            invalid(format!(
                "integer {} does not fit in a signed 64-bit integer (-2**63 .. 2**63-1); store it as a str",
                obj.str().map(|s| s.to_string()).unwrap_or_default()
            ))
        });
    }
    if let Ok(f) = obj.downcast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return s
            .to_cow()
            .map(|s| Value::String(s.into_owned()))
            .map_err(|e| invalid(format!("string is not valid UTF-8: {e}")));
    }
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.downcast::<PyByteArray>() {
        return Ok(Value::Bytes(b.to_vec()));
    }
    if let Ok(d) = obj.downcast::<PyDict>() {
        let mut map = std::collections::BTreeMap::new();
        for (k, v) in d.iter() {
            let Ok(k) = k.downcast::<PyString>() else {
                return Err(invalid(format!(
                    "dict keys must be str, not {}",
                    type_name(&k)
                )));
            };
            map.insert(k.to_string(), to_value_at(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(l) = obj.downcast::<PyList>() {
        let mut out = Vec::with_capacity(l.len());
        for v in l.iter() {
            out.push(to_value_at(&v, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(t) = obj.downcast::<PyTuple>() {
        let mut out = Vec::with_capacity(t.len());
        for v in t.iter() {
            out.push(to_value_at(&v, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    Err(invalid(format!(
        "cannot store a value of type {}: use None, bool, int, float, str, bytes, list or dict",
        type_name(obj)
    )))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Converts a [`Value`] to the natural Python object.
pub(crate) fn to_py(py: Python<'_>, v: &Value) -> PyResult<PyObject> {
    Ok(match v {
        Value::Null => py.None(),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::Float(f) => PyFloat::new(py, *f).into_any().unbind(),
        Value::String(s) => PyString::new(py, s).into_any().unbind(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any().unbind(),
        Value::Array(items) => {
            let l = PyList::empty(py);
            for x in items {
                l.append(to_py(py, x)?)?;
            }
            l.into_any().unbind()
        }
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, x) in map {
                d.set_item(k, to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

/// `None` or the converted value.
pub(crate) fn opt_to_py(py: Python<'_>, v: &Option<Value>) -> PyResult<PyObject> {
    match v {
        Some(v) => to_py(py, v),
        None => Ok(py.None()),
    }
}

/// A conflict as a dict: `space`, `kind`, `key`, `ancestor`, `source`, `target`.
pub(crate) fn conflict_to_py(py: Python<'_>, c: &MergeConflict) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("space", &c.space)?;
    d.set_item("kind", c.kind.name())?;
    d.set_item("key", &c.key)?;
    d.set_item("ancestor", opt_to_py(py, &c.ancestor)?)?;
    d.set_item("source", opt_to_py(py, &c.source)?)?;
    d.set_item("target", opt_to_py(py, &c.target)?)?;
    Ok(d.into_any().unbind())
}

/// A diff entry as a dict: `space`, `change` (`added`, `removed` or `modified`), `kind`, `key`, `a`, `b`.
pub(crate) fn diff_entry_to_py(
    py: Python<'_>,
    space: &str,
    change: &str,
    e: &DiffEntry,
) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("space", space)?;
    d.set_item("change", change)?;
    d.set_item("kind", e.kind.name())?;
    d.set_item("key", &e.key)?;
    d.set_item("a", opt_to_py(py, &e.a)?)?;
    d.set_item("b", opt_to_py(py, &e.b)?)?;
    Ok(d.into_any().unbind())
}

/// Any serde-serializable report as a Python dict (through its JSON form; reports hold no bytes).
pub(crate) fn report_to_py<T: serde::Serialize>(py: Python<'_>, r: &T) -> PyResult<PyObject> {
    let j = serde_json::to_value(r)
        .map_err(|e| crate::errors::StrataError::new_err(format!("cannot render a report: {e}")))?;
    to_py(py, &Value::from_json(&j))
}
