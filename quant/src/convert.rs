//! safetensors state_dict → edge f32 model file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use edge::builder::{self, logical_shape};
use edge::format::{self, Role, TensorId};
use edge::Arch;
use safetensors::{Dtype, SafeTensors};

use crate::names;
use crate::values::{self, BadValue};

/// One tensor, widened to f32, with its original shape.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A state_dict keyed by timm names (official names already rewritten).
pub type StateDict = BTreeMap<String, Tensor>;

/// Why a conversion failed. Nothing is written when one is returned.
#[derive(Debug)]
pub enum ConvertError {
    /// Reading or writing a file failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The weights file is not valid safetensors.
    Safetensors { path: PathBuf, message: String },
    /// The weights file is not a readable PyTorch checkpoint.
    Pytorch { path: PathBuf, message: String },
    /// `--ema`/`--state` asked for an entry the file does not hold (`available`: the entries
    /// with ConvNeXt tensors; empty for a safetensors file, which is one state dict).
    NoEntry {
        path: PathBuf,
        asked: String,
        available: Vec<String>,
    },
    /// A tensor has a dtype other than f32/f16/bf16/f64.
    Dtype { name: String, dtype: String },
    /// Two keys name the same tensor (e.g. both timm and official names present).
    Duplicate { name: String },
    /// No key of the file is a ConvNeXt V2 tensor in any layout [`names::place`] knows (at the
    /// top level or, for a checkpoint, under any entry); `keys`: the first few, sorted.
    UnknownLayout { path: PathBuf, keys: Vec<String> },
    /// An ONNX file that does not read as ConvNeXt V2 (the node at fault named).
    Onnx {
        path: PathBuf,
        error: crate::onnx::OnnxError,
    },
    /// Keys of two different non-timm layouts in one file (`keys`: one of each).
    MixedLayouts { path: PathBuf, keys: Vec<String> },
    /// A tensor's stored shape does not fit its layout (a MinkowskiEngine kernel of the wrong
    /// rank or a non-square kernel volume).
    Layout { name: String, message: String },
    /// No classifier (`head.fc.weight`): encoder weights (an FCMAE pretraining checkpoint, a timm
    /// `.fcmae` file, a bare Hugging Face `ConvNextV2Model`), which an edge model cannot run.
    NoClassifier,
    /// The architecture cannot be inferred from the tensors present.
    CannotInfer(String),
    /// `--arch` names no known size.
    UnknownArch(String),
    /// The architecture is not runnable.
    Arch(edge::Error),
    /// Missing, unexpected and mis-shaped tensors, every one of them.
    Tensors {
        missing: Vec<String>,
        unexpected: Vec<String>,
        misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    /// Tensors holding NaN, infinities or values beyond the precision they are read or stored
    /// in: every one of them, by name.
    Values(crate::values::BadValues),
    /// The written file failed its own validation (a bug; reported rather than written).
    SelfCheck(edge::Error),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ConvertError::Safetensors { path, message } => {
                write!(
                    f,
                    "{}: not a valid safetensors file: {message}",
                    path.display()
                )
            }
            ConvertError::Pytorch { path, message } => {
                write!(f, "{}: PyTorch checkpoint: {message}", path.display())
            }
            ConvertError::NoEntry { path, asked, available } if available.is_empty() => write!(
                f,
                "{}: asked for {asked}, but a safetensors or ONNX file is a single state dict (--ema and --state choose among the entries of a PyTorch checkpoint)",
                path.display()
            ),
            ConvertError::NoEntry { path, asked, available } => write!(
                f,
                "{}: no {asked} in this checkpoint; it holds ConvNeXt weights under {}",
                path.display(),
                available
                    .iter()
                    .map(|a| if a.is_empty() { "the top level".to_string() } else { format!("`{a}`") })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ConvertError::Dtype { name, dtype } => {
                write!(
                    f,
                    "tensor {name}: dtype {dtype} is not supported (f32, f16, bf16, f64 are)"
                )
            }
            ConvertError::Duplicate { name } => {
                write!(f, "tensor {name} appears twice (under two key names)")
            }
            ConvertError::UnknownLayout { path, keys } => write!(
                f,
                "{}: no ConvNeXt V2 tensors at the top level or under any entry, in any known layout; first keys: {keys:?}; known layouts: {}",
                path.display(),
                names::Layout::ALL
                    .iter()
                    .map(|l| l.describe())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            ConvertError::Layout { name, message } => write!(f, "tensor {name}: {message}"),
            ConvertError::MixedLayouts { path, keys } => write!(
                f,
                "{}: keys of two layouts in one file ({}): one model's weights are in one layout",
                path.display(),
                keys.join(" and ")
            ),
            ConvertError::Onnx { path, error } => write!(f, "{}: {error}", path.display()),
            ConvertError::NoClassifier => write!(
                f,
                "no classifier (head.fc.weight; official head.weight, Hugging Face classifier.weight): these are encoder weights (an FCMAE pretraining checkpoint, a timm .fcmae file or a bare Hugging Face ConvNextV2Model), and an edge model needs the head. Fine-tune them first (train finetune --init FILE) and convert the result"
            ),
            ConvertError::CannotInfer(m) => write!(f, "cannot infer the architecture: {m}"),
            ConvertError::UnknownArch(a) => write!(
                f,
                "unknown --arch {a:?} (known: {})",
                edge::arch::NAMED
                    .iter()
                    .map(|n| n.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ConvertError::Arch(e) => write!(f, "{e}"),
            ConvertError::Tensors {
                missing,
                unexpected,
                misshaped,
            } => {
                writeln!(
                    f,
                    "weights do not match the architecture ({} missing, {} unexpected, {} mis-shaped):",
                    missing.len(),
                    unexpected.len(),
                    misshaped.len()
                )?;
                for m in missing {
                    writeln!(f, "  missing:    {m}")?;
                }
                for u in unexpected {
                    writeln!(f, "  unexpected: {u}")?;
                }
                for (n, want, got) in misshaped {
                    writeln!(f, "  mis-shaped: {n}: expected {want:?}, found {got:?}")?;
                }
                Ok(())
            }
            ConvertError::Values(v) => write!(f, "{v}"),
            ConvertError::SelfCheck(e) => {
                write!(f, "internal error: the written model fails validation: {e}")
            }
        }
    }
}

impl std::error::Error for ConvertError {}

/// Reads weights — safetensors, or a PyTorch checkpoint (`.pth`/`.pt`, or any file that is a ZIP
/// archive) — widening f16/bf16/f64 to f32 and rewriting every known layout (official, FCMAE
/// pretraining, Hugging Face: [`names`]) to timm's names and shapes.
///
/// Errors: [`ConvertError::UnknownLayout`] when no key is a ConvNeXt V2 tensor of a known
/// layout (the first keys and the known layouts named); [`ConvertError::Values`] names every tensor holding a NaN, an infinity or an f64 value
/// beyond f32's range (the first offending element of each, and how many offend).
pub fn load_state_dict(path: &Path) -> Result<StateDict, ConvertError> {
    load_state_dict_entry(path, Entry::Default).map(|(sd, _)| sd)
}

/// Which state dict of a checkpoint holding several (the official and timm training scripts
/// save `model` beside `model_ema`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Entry {
    /// The non-EMA weights: the first of the top level, `model`, `state_dict`, and only then an
    /// EMA entry.
    #[default]
    Default,
    /// The EMA weights: `model_ema`, `state_dict_ema` or `ema`, whichever the file has.
    Ema,
    /// The entry of this name.
    Named(String),
}

impl Entry {
    /// From the `--ema` / `--state NAME` flags of every command that reads weights; both at
    /// once is an error.
    pub fn from_flags(ema: bool, state: Option<String>) -> Result<Entry, String> {
        match (ema, state) {
            (false, None) => Ok(Entry::Default),
            (true, None) => Ok(Entry::Ema),
            (false, Some(n)) => Ok(Entry::Named(n)),
            (true, Some(_)) => Err("--ema and --state both choose the weights: give one".into()),
        }
    }
}

/// EMA entries, in the order looked for by [`Entry::Ema`].
const EMA_ENTRIES: [&str; 3] = ["model_ema", "state_dict_ema", "ema"];

/// [`load_state_dict`] choosing the entry of a PyTorch checkpoint that holds several; also
/// returns [`LoadNotes`] for the user: the entry used when the choice was not the only one
/// possible (`using model; the file also holds model_ema: --ema selects it`), and the layout
/// read when it was not timm's (names: [`names`]).
///
/// Errors: [`ConvertError::NoEntry`] when `entry` names something the file lacks (the entries it
/// has are listed), or when an entry is asked of a safetensors file (a single state dict).
pub fn load_state_dict_entry(
    path: &Path,
    entry: Entry,
) -> Result<(StateDict, LoadNotes), ConvertError> {
    use std::io::Read;
    let io = |source| ConvertError::Io {
        path: path.into(),
        source,
    };
    // Four bytes decide the container, so a checkpoint is read once, by its reader.
    let mut magic = [0u8; 4];
    let got = std::fs::File::open(path)
        .and_then(|f| f.take(4).read(&mut magic))
        .map_err(io)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "pth" | "pt") || magic[..got] == *b"PK\x03\x04" {
        return load_pytorch(path, &entry);
    }
    if ext == "onnx" {
        if entry != Entry::Default {
            return Err(ConvertError::NoEntry {
                path: path.into(),
                asked: entry_name(&entry),
                available: Vec::new(),
            });
        }
        let (sd, note) = crate::onnx::load(path).map_err(|error| ConvertError::Onnx {
            path: path.into(),
            error,
        })?;
        values::check_finite(sd.iter().map(|(name, t)| (name.as_str(), &t.data[..])))
            .map_err(ConvertError::Values)?;
        return Ok((
            sd,
            LoadNotes {
                entry: None,
                layout: Some(note),
            },
        ));
    }
    if entry != Entry::Default {
        return Err(ConvertError::NoEntry {
            path: path.into(),
            asked: entry_name(&entry),
            available: Vec::new(),
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| ConvertError::Safetensors {
        path: path.into(),
        message: e.to_string(),
    })?;
    let mut raw = Vec::new();
    let mut bad = Vec::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            Dtype::F32 => Wide::F32,
            Dtype::F16 => Wide::F16,
            Dtype::BF16 => Wide::BF16,
            Dtype::F64 => Wide::F64,
            other => {
                return Err(ConvertError::Dtype {
                    name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let data = widen_checked(&name, dtype, view.data(), &mut bad);
        raw.push((name, view.shape().to_vec(), data));
    }
    values::collect(bad).map_err(ConvertError::Values)?;
    let (sd, layout) = canonical(path, raw)?;
    Ok((
        sd,
        LoadNotes {
            entry: None,
            layout,
        },
    ))
}

/// What the loader chose that the user should know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadNotes {
    /// Which entry of a checkpoint holding several was read (`using `model`; the file also
    /// holds `model_ema`: --ema selects the EMA weights`): for stderr.
    pub entry: Option<String>,
    /// How a file not in timm names was read (its layout; the FCMAE decoder side dropped): for
    /// stdout.
    pub layout: Option<String>,
}

impl LoadNotes {
    /// Prints the entry note on stderr and the layout note on stdout.
    pub fn print(&self) {
        if let Some(n) = &self.entry {
            eprintln!("{n}");
        }
        if let Some(n) = &self.layout {
            println!("{n}");
        }
    }
}

/// Stored tensors (key, shape, values) → the canonical state dict: every key placed by
/// [`names::place`] and rearranged by [`names::relayout`]; the FCMAE decoder side dropped
/// when the file is an FCMAE pretraining checkpoint; keys no layout knows kept under their own
/// name (the converter reports them as unexpected). Returns the note saying how the file was
/// read, unless it was in timm names throughout.
///
/// Errors: [`ConvertError::UnknownLayout`] when not one key is placed;
/// [`ConvertError::Layout`] for a kernel whose shape its layout forbids;
/// [`ConvertError::Duplicate`] when two keys name one tensor.
fn canonical(
    path: &Path,
    raw: Vec<(String, Vec<usize>, Vec<f32>)>,
) -> Result<(StateDict, Option<String>), ConvertError> {
    use std::collections::BTreeSet;
    let placed: Vec<Option<names::Placed>> = raw.iter().map(|(k, ..)| names::place(k)).collect();
    let layouts: BTreeSet<names::Layout> = placed.iter().flatten().map(|p| p.layout).collect();
    if layouts.is_empty() {
        let mut keys: Vec<String> = raw.into_iter().map(|(k, ..)| k).collect();
        keys.sort();
        keys.truncate(5);
        return Err(ConvertError::UnknownLayout {
            path: path.into(),
            keys,
        });
    }
    // Two layouts besides timm's in one file are two models' keys, not one model's.
    let foreign: Vec<names::Layout> = layouts
        .iter()
        .copied()
        .filter(|l| *l != names::Layout::Timm)
        .collect();
    if let [a, b, ..] = foreign[..] {
        let example = |l: names::Layout| {
            raw.iter()
                .zip(&placed)
                .find(|(_, p)| p.as_ref().is_some_and(|p| p.layout == l))
                .map(|((k, ..), _)| k.clone())
                .unwrap_or_default()
        };
        return Err(ConvertError::MixedLayouts {
            path: path.into(),
            keys: vec![example(a), example(b)],
        });
    }
    let fcmae = layouts.contains(&names::Layout::FcmaePretraining);
    let (mut sd, mut dropped) = (StateDict::new(), 0usize);
    for ((key, shape, data), p) in raw.into_iter().zip(placed) {
        match p {
            Some(p) => {
                let (shape, data) =
                    names::relayout(&p, &shape, data).map_err(|message| ConvertError::Layout {
                        name: key.clone(),
                        message,
                    })?;
                insert(&mut sd, p.name, shape, data)?;
            }
            None if fcmae && names::is_fcmae_decoder(&key) => dropped += 1,
            // Placed by no layout: kept as stored (without `module.`) for the converter to name.
            None => {
                let name = key.strip_prefix("module.").unwrap_or(&key).to_string();
                insert(&mut sd, name, shape, data)?
            }
        }
    }
    let note = (!foreign.is_empty()).then(|| {
        let read_as: Vec<&str> = layouts.iter().map(|l| l.describe()).collect();
        let mut n = format!("{}: read as {}", path.display(), read_as.join(" + "));
        if dropped > 0 {
            n.push_str(&format!(
                "; the encoder is kept, the FCMAE decoder side dropped ({dropped} tensors: proj, mask_token, decoder.*, pred)"
            ));
        }
        n
    });
    Ok((sd, note))
}

fn entry_name(e: &Entry) -> String {
    match e {
        Entry::Default => "the default weights".into(),
        Entry::Ema => format!("EMA weights ({})", EMA_ENTRIES.join(", ")),
        Entry::Named(n) => format!("`{n}`"),
    }
}

/// [`widen`], recording in `bad` the first value (as stored) that is not finite after widening.
/// An f64 that is finite but beyond f32 widens to an infinity: recognised by its stored value,
/// read back only for a tensor that has an infinity.
fn widen_checked(name: &str, dtype: Wide, raw: &[u8], bad: &mut Vec<BadValue>) -> Vec<f32> {
    let data = widen(dtype, raw);
    let name = names::to_timm(name);
    let mut first = values::first_bad(&name, data.iter().map(|&v| v as f64), values::not_finite);
    if matches!(dtype, Wide::F64) && first.is_some() {
        let stored = raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")));
        first = values::first_bad(&name, stored, values::f32_problem);
    }
    bad.extend(first);
    data
}

/// Floating-point storage types, widened to f32 on load.
#[derive(Clone, Copy)]
enum Wide {
    F32,
    F16,
    BF16,
    F64,
}

/// Little-endian (safetensors) / native-endian (pytorch-reader, little-endian files only) bytes → f32.
fn widen(dtype: Wide, raw: &[u8]) -> Vec<f32> {
    match dtype {
        Wide::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Wide::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Wide::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Wide::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
            .collect(),
    }
}

fn insert(
    sd: &mut StateDict,
    name: String,
    shape: Vec<usize>,
    data: Vec<f32>,
) -> Result<(), ConvertError> {
    match sd.entry(name) {
        std::collections::btree_map::Entry::Occupied(o) => Err(ConvertError::Duplicate {
            name: o.key().clone(),
        }),
        std::collections::btree_map::Entry::Vacant(v) => {
            v.insert(Tensor { shape, data });
            Ok(())
        }
    }
}

/// Reads a `torch.save` file (ZIP or legacy pickle) with burn's pytorch-reader: the entry
/// `entry` picks among those holding ConvNeXt tensors (the top level `""`, `model`,
/// `model_ema`, …); other entries are ignored.
fn load_pytorch(path: &Path, entry: &Entry) -> Result<(StateDict, LoadNotes), ConvertError> {
    let err = |message: String| ConvertError::Pytorch {
        path: path.into(),
        message,
    };
    // Some PyTorch 2.15 files (ZIP64 end records) defeat the ZIP reader's archive-offset
    // detection ("Invalid Central Directory header") though they are valid: read those again
    // from a copy rewritten with the offset fixed at 0. `_copy` removes the copy when done.
    let (reader, _copy) = match pytorch_reader::PytorchReader::new(path) {
        Ok(r) => (r, None),
        Err(pytorch_reader::PytorchError::Zip(first)) => {
            let copy = rezip(path).map_err(|e| err(format!("{first}; read with offset 0: {e}")))?;
            let r = pytorch_reader::PytorchReader::new(&copy.0)
                .map_err(|e| err(format!("{first}; its rewritten copy: {e}")))?;
            (r, Some(copy))
        }
        Err(e) => return Err(err(e.to_string())),
    };
    let tensors = reader.into_tensors();
    let is_convnext = |n: &str| names::place(n).is_some();
    // Every entry holding ConvNeXt tensors: "" for the top level, else the first key component.
    let mut available: Vec<String> = Vec::new();
    for k in tensors.keys() {
        let e = if is_convnext(k) {
            ""
        } else {
            match k.split_once('.') {
                Some((head, rest)) if is_convnext(rest) => head,
                _ => continue,
            }
        };
        if !available.iter().any(|a| a == e) {
            available.push(e.to_string());
        }
    }
    available.sort();
    if available.is_empty() {
        let mut keys: Vec<String> = tensors.keys().cloned().collect();
        keys.sort();
        keys.truncate(5);
        return Err(ConvertError::UnknownLayout {
            path: path.into(),
            keys,
        });
    }
    let has = |e: &&str| available.iter().any(|a| a == e);
    // The non-EMA weights first; an entry of another name only when it is the file's only one.
    let chosen: Option<String> = match entry {
        Entry::Named(n) => has(&n.as_str()).then(|| n.clone()),
        Entry::Ema => EMA_ENTRIES.into_iter().find(has).map(str::to_string),
        Entry::Default => ["", "model", "state_dict"]
            .into_iter()
            .chain(EMA_ENTRIES)
            .find(has)
            .map(str::to_string)
            .or_else(|| available.first().cloned()),
    };
    let Some(chosen) = chosen else {
        return Err(ConvertError::NoEntry {
            path: path.into(),
            asked: entry_name(entry),
            available,
        });
    };
    let shown = |e: &str| {
        if e.is_empty() {
            "the top-level state dict".to_string()
        } else {
            format!("`{e}`")
        }
    };
    let others: Vec<&String> = available.iter().filter(|a| **a != chosen).collect();
    let note = (*entry == Entry::Default && !others.is_empty()).then(|| {
        let ema = others.iter().any(|o| EMA_ENTRIES.contains(&o.as_str()));
        format!(
            "{}: using {}; the file also holds {}{}",
            path.display(),
            shown(&chosen),
            others
                .iter()
                .map(|o| shown(o))
                .collect::<Vec<_>>()
                .join(", "),
            if ema {
                ": --ema selects the EMA weights"
            } else {
                ": --state NAME selects another"
            }
        )
    });
    let prefix = if chosen.is_empty() {
        String::new()
    } else {
        format!("{chosen}.")
    };
    let prefix = prefix.as_str();
    let mut raw = Vec::new();
    let mut bad = Vec::new();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for full in names {
        let Some(name) = full.strip_prefix(prefix) else {
            continue;
        };
        let t = &tensors[full];
        use pytorch_reader::DType;
        let dtype = match t.dtype() {
            DType::F32 => Wide::F32,
            DType::F16 => Wide::F16,
            DType::BF16 => Wide::BF16,
            DType::F64 => Wide::F64,
            other => {
                return Err(ConvertError::Dtype {
                    name: name.into(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        let bytes = t.read().map_err(|e| err(e.to_string()))?;
        let data = widen_checked(name, dtype, &bytes, &mut bad);
        raw.push((name.to_string(), t.shape().to_vec(), data));
    }
    values::collect(bad).map_err(ConvertError::Values)?;
    let (sd, layout) = canonical(path, raw)?;
    Ok((
        sd,
        LoadNotes {
            entry: note,
            layout,
        },
    ))
}

/// A temporary file, removed on drop.
struct TempCopy(PathBuf);

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A copy of the ZIP archive `path`, read with its archive offset fixed at 0, in the temporary
/// folder. Only uncompressed entries are copied (torch.save writes no other kind), so the copy
/// is no larger than the file.
fn rezip(path: &Path) -> Result<TempCopy, String> {
    use zip::read::{ArchiveOffset, Config};
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let config = Config {
        archive_offset: ArchiveOffset::Known(0),
    };
    let mut archive = zip::ZipArchive::with_config(config, std::io::BufReader::new(file))
        .map_err(|e| e.to_string())?;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let copy = TempCopy(
        std::env::temp_dir().join(format!("quant-rezip-{}-{seq}.pth", std::process::id())),
    );
    let out = std::fs::File::create(&copy.0).map_err(|e| format!("{}: {e}", copy.0.display()))?;
    let mut w = zip::ZipWriter::new(std::io::BufWriter::new(out));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        // torch.save stores every entry uncompressed; anything else could expand without
        // bound into the copy.
        if entry.compression() != zip::CompressionMethod::Stored {
            return Err(format!(
                "entry {} is compressed: not a torch.save archive",
                entry.name().map_err(|e| e.to_string())?
            ));
        }
        let name = entry.name().map_err(|e| e.to_string())?.to_string();
        w.start_file(name, options).map_err(|e| e.to_string())?;
        std::io::copy(&mut entry, &mut w).map_err(|e| format!("{}: {e}", copy.0.display()))?;
    }
    w.finish().map_err(|e| e.to_string())?;
    Ok(copy)
}

fn squeeze(shape: &[usize]) -> Vec<usize> {
    shape.iter().copied().filter(|&d| d != 1).collect()
}

/// Infers depths, dims and classes from the tensors present; the input size is the caller's.
pub fn infer_arch(sd: &StateDict, input_h: usize, input_w: usize) -> Result<Arch, ConvertError> {
    let mut depth = BTreeMap::<usize, usize>::new();
    for k in sd.keys() {
        if let Some(id) = names::tensor_id(k) {
            if matches!(id.role, Role::DwConvW) {
                let d = depth.entry(id.stage as usize).or_default();
                *d = (*d).max(id.block as usize + 1);
            }
        }
    }
    let num_stages = depth.len();
    if num_stages == 0
        || num_stages > edge::arch::MAX_STAGES
        || depth.keys().copied().ne(0..num_stages)
    {
        return Err(ConvertError::CannotInfer(format!(
            "stages with blocks found: {:?} (need 0..n, n ≤ {})",
            depth.keys().collect::<Vec<_>>(),
            edge::arch::MAX_STAGES
        )));
    }
    let mut arch = Arch::new([0; 4], [0; 4], 0, input_h, input_w);
    arch.num_stages = num_stages;
    for (s, &d) in &depth {
        let key = format!("stages.{s}.blocks.0.conv_dw.weight");
        let t = sd
            .get(&key)
            .ok_or_else(|| ConvertError::CannotInfer(format!("{key} is missing")))?;
        arch.depths[*s] = d;
        arch.dims[*s] = t.shape.first().copied().unwrap_or(0);
    }
    let head = sd.get("head.fc.weight").ok_or(ConvertError::NoClassifier)?;
    arch.num_classes = head.shape.first().copied().unwrap_or(0);
    Ok(arch)
}

/// The architecture of a named size, with classes taken from the weights' classifier.
pub fn named_arch(
    name: &str,
    sd: &StateDict,
    input_h: usize,
    input_w: usize,
) -> Result<Arch, ConvertError> {
    let classes = sd
        .get("head.fc.weight")
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(1000);
    Arch::named(name, classes, input_h, input_w)
        .ok_or_else(|| ConvertError::UnknownArch(name.into()))
}

/// Checks every tensor against `arch` and builds the model file bytes (validated by parsing).
pub fn convert(sd: &StateDict, arch: &Arch) -> Result<Vec<u8>, ConvertError> {
    arch.validate().map_err(ConvertError::Arch)?;
    if !sd.contains_key("head.fc.weight") {
        return Err(ConvertError::NoClassifier);
    }
    let last = arch.num_stages as u16 - 1;
    let wanted: Vec<TensorId> = format::tensor_ids(arch, edge::Precision::F32).collect();
    let mut by_id = BTreeMap::<(u16, u16, u32), &Tensor>::new();
    let mut unexpected = Vec::new();
    for (k, t) in sd {
        match names::tensor_id(k) {
            Some(mut id) => {
                if matches!(
                    id.role,
                    Role::HeadNormW | Role::HeadNormB | Role::HeadFcW | Role::HeadFcB
                ) {
                    id.stage = last;
                }
                if wanted.contains(&id) {
                    by_id.insert((id.role as u16, id.stage, id.block), t);
                } else {
                    unexpected.push(k.clone());
                }
            }
            None => unexpected.push(k.clone()),
        }
    }
    let (mut missing, mut misshaped) = (Vec::new(), Vec::new());
    for id in &wanted {
        let (shape, ndim) = logical_shape(arch, *id);
        match by_id.get(&(id.role as u16, id.stage, id.block)) {
            None => missing.push(names::timm_name(*id)),
            Some(t)
                if squeeze(&t.shape) != squeeze(&shape[..ndim])
                    || t.data.len() != builder::logical_len(&(shape, ndim)) =>
            {
                misshaped.push((
                    names::timm_name(*id),
                    shape[..ndim].to_vec(),
                    t.shape.clone(),
                ))
            }
            Some(_) => {}
        }
    }
    if !(missing.is_empty() && unexpected.is_empty() && misshaped.is_empty()) {
        return Err(ConvertError::Tensors {
            missing,
            unexpected,
            misshaped,
        });
    }
    // A state dict built in memory has not passed load_state_dict's check.
    let named: Vec<(String, &[f32])> = wanted
        .iter()
        .map(|id| {
            let t = by_id[&(id.role as u16, id.stage, id.block)];
            (names::timm_name(*id), &t.data[..])
        })
        .collect();
    values::check_finite(named.iter().map(|(n, v)| (n.as_str(), *v)))
        .map_err(ConvertError::Values)?;
    let file = builder::build(arch, |id| {
        &by_id[&(id.role as u16, id.stage, id.block)].data[..]
    })
    .map_err(ConvertError::Arch)?;
    // Parse what we wrote, from an aligned copy, before anyone sees it.
    edge::Model::parse(builder::AlignedBytes::from_slice(&file).as_slice())
        .map_err(ConvertError::SelfCheck)?;
    Ok(file)
}

/// Reads `weights`, converts for `arch` (or the inferred one) and writes `out` atomically
/// (temporary file + rename): on any error nothing is written.
pub fn convert_file(
    weights: &Path,
    arch_name: Option<&str>,
    input_hw: (usize, usize),
    out: &Path,
) -> Result<Arch, ConvertError> {
    convert_state_dict_to_file(&load_state_dict(weights)?, arch_name, input_hw, out)
}

/// The second half of [`convert_file`]: a loaded state dict (from [`load_state_dict_entry`],
/// whose notes the caller prints first) converted for `arch_name` (or the inferred
/// architecture) and written to `out` atomically.
pub fn convert_state_dict_to_file(
    sd: &StateDict,
    arch_name: Option<&str>,
    input_hw: (usize, usize),
    out: &Path,
) -> Result<Arch, ConvertError> {
    let arch = match arch_name {
        Some(n) => named_arch(n, sd, input_hw.0, input_hw.1)?,
        None => infer_arch(sd, input_hw.0, input_hw.1)?,
    };
    let file = convert(sd, &arch)?;
    write_atomic(out, &file)?;
    Ok(arch)
}

/// Writes via a sibling temporary file and a rename, so a reader never sees a partial file.
pub fn write_atomic(out: &Path, bytes: &[u8]) -> Result<(), ConvertError> {
    let io = |source| ConvertError::Io {
        path: out.into(),
        source,
    };
    let mut tmp = out.as_os_str().to_owned();
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp.push(format!(".tmp{}.{seq}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}
