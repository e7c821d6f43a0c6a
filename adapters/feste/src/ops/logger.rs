//! logger/*: Feste's `TrainingLogger` (CSV header and rows).
//!
//! `TrainingLogger::log` takes no elapsed time (it reads its own clock since `new`) and
//! no gradient norm (its rows have no such column): the row written is Feste's row for
//! the case's other arguments.

use crate::bridge::Scratch;
use crate::case::{AdapterError, Case, OpResult, Outputs, Reply};
use feste::TrainingLogger;

fn lines(path: &std::path::Path) -> Result<Vec<String>, AdapterError> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.split_inclusive('\n').map(str::to_string).collect())
}

pub fn header(_case: &Case) -> OpResult {
    let scratch = Scratch::new()?;
    let path = scratch.path("log.csv");
    TrainingLogger::new(&path.to_string_lossy()).map_err(|e| AdapterError(format!("TrainingLogger::new: {e}")))?;
    let mut out = Outputs::new();
    out.file("header.txt", lines(&path)?.concat().into_bytes());
    Ok(Reply::Ok(out))
}

pub fn row(case: &Case) -> OpResult {
    let scratch = Scratch::new()?;
    let path = scratch.path("log.csv");
    let mut log = TrainingLogger::new(&path.to_string_lossy())
        .map_err(|e| AdapterError(format!("TrainingLogger::new: {e}")))?;
    let sample = case.arg("sample").as_str().map(str::to_string);
    log.log(
        case.arg_usize("step")?,
        case.arg_f64("lr")? as f32,
        case.arg_f64("train_loss")? as f32,
        case.arg_f64("val_loss")? as f32,
        sample.as_deref(),
    )
    .map_err(|e| AdapterError(format!("TrainingLogger::log: {e}")))?;
    // the first line is the header TrainingLogger::new wrote; the row follows
    let rows = lines(&path)?;
    let mut out = Outputs::new();
    out.file("row.txt", rows[1..].concat().into_bytes());
    Ok(Reply::Ok(out))
}
