//! Reader for CTranslate2's `model.bin`: the only form in which Whisper weights reach this
//! machine (inside registry packages), so the encoder is imported from it.
//!
//! The layout (binary version 6, little-endian): `u32` version, a length-prefixed spec name and
//! `u32` revision, `u32` variable count, then per variable a `u16`-length NUL-terminated name,
//! `u8` rank, `u32` dims, `u8` data type, `u32` byte count and the raw bytes; finally `u32`
//! alias count and (alias, target) name pairs. Nothing is copied: variables borrow the file.

use std::collections::BTreeMap;

/// Element type of a stored variable (CTranslate2's `DataType` numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    /// `float32`.
    F32,
    /// `int8` (also used for boolean flags).
    I8,
    /// `int16` (scalar settings such as `num_heads`).
    I16,
    /// `int32`.
    I32,
    /// `float16`, what the packaged Whisper checkpoints use.
    F16,
    /// `bfloat16`.
    Bf16,
}

impl Ct2Dtype {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One named tensor of the file, borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Ct2Variable<'a> {
    /// Shape (empty for scalars).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Ct2Dtype,
    /// Raw little-endian elements, row-major.
    pub data: &'a [u8],
}

impl Ct2Variable<'_> {
    /// The value of an integer scalar (flags and settings such as `num_heads`).
    pub fn scalar_int(&self) -> Option<i64> {
        if !self.shape.is_empty() {
            return None;
        }
        let d = self.data;
        Some(match (self.dtype, d.len()) {
            (Ct2Dtype::I8, 1) => d[0] as i8 as i64,
            (Ct2Dtype::I16, 2) => i16::from_le_bytes([d[0], d[1]]) as i64,
            (Ct2Dtype::I32, 4) => i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64,
            _ => return None,
        })
    }
}

/// A parsed `model.bin`.
#[derive(Debug, Clone)]
pub struct Ct2Model<'a> {
    /// Spec name, e.g. `WhisperSpec`.
    pub spec: String,
    /// Spec revision.
    pub revision: u32,
    /// Variables by name; aliases resolve to their target's data.
    pub variables: BTreeMap<String, Ct2Variable<'a>>,
}

/// Why a `model.bin` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    /// The file ends before a field it announces.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// A binary version this reader does not know.
    #[error("binary version {0} is not supported (this reader knows version 6)")]
    Version(u32),
    /// A name that is not UTF-8.
    #[error("a variable name at byte {0} is not UTF-8")]
    Name(usize),
    /// A data type code outside CTranslate2's table.
    #[error("variable {name}: unknown data type code {code}")]
    Dtype {
        /// Variable name.
        name: String,
        /// The code read.
        code: u8,
    },
    /// The byte count disagrees with shape × element size.
    #[error("variable {name}: {bytes} bytes stored for shape {shape:?} of {dtype:?}")]
    Size {
        /// Variable name.
        name: String,
        /// Stored bytes.
        bytes: usize,
        /// Declared shape.
        shape: Vec<usize>,
        /// Declared type.
        dtype: Ct2Dtype,
    },
    /// An alias pointing at a variable that does not exist.
    #[error("alias {alias} points at missing variable {target}")]
    Alias {
        /// Alias name.
        alias: String,
        /// Missing target.
        target: String,
    },
    /// Bytes left over after the alias table.
    #[error("{0} unexpected bytes after the last field")]
    Trailing(usize),
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Ct2Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(Ct2Error::Truncated(self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Ct2Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Ct2Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `u16`-length string whose last byte is a NUL terminator.
    fn name(&mut self) -> Result<String, Ct2Error> {
        let at = self.at;
        let n = self.u16()? as usize;
        let raw = self.take(n)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec()).map_err(|_| Ct2Error::Name(at))
    }
}

/// Binary format version this reader understands.
pub const BINARY_VERSION: u32 = 6;

/// Parses a whole `model.bin` held in memory.
pub fn parse(bytes: &[u8]) -> Result<Ct2Model<'_>, Ct2Error> {
    let mut c = Cursor { bytes, at: 0 };
    let version = c.u32()?;
    if version != BINARY_VERSION {
        return Err(Ct2Error::Version(version));
    }
    let spec = c.name()?;
    let revision = c.u32()?;
    let count = c.u32()? as usize;
    let mut variables = BTreeMap::new();
    for _ in 0..count {
        let name = c.name()?;
        let rank = c.u8()? as usize;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(c.u32()? as usize);
        }
        let code = c.u8()?;
        let dtype = Ct2Dtype::from_code(code).ok_or_else(|| Ct2Error::Dtype {
            name: name.clone(),
            code,
        })?;
        let n_bytes = c.u32()? as usize;
        let data = c.take(n_bytes)?;
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
        if expected != Some(n_bytes) {
            return Err(Ct2Error::Size {
                name,
                bytes: n_bytes,
                shape,
                dtype,
            });
        }
        variables.insert(name, Ct2Variable { shape, dtype, data });
    }
    let aliases = c.u32()? as usize;
    for _ in 0..aliases {
        let alias = c.name()?;
        let target = c.name()?;
        let v = variables
            .get(&target)
            .cloned()
            .ok_or_else(|| Ct2Error::Alias {
                alias: alias.clone(),
                target,
            })?;
        variables.insert(alias, v);
    }
    if c.at != bytes.len() {
        return Err(Ct2Error::Trailing(bytes.len() - c.at));
    }
    Ok(Ct2Model {
        spec,
        revision,
        variables,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Serialises variables the way CTranslate2 does (for tests of the reader and converter).
    pub(crate) fn write(spec: &str, vars: &[(&str, Vec<usize>, u8, Vec<u8>)]) -> Vec<u8> {
        fn name(out: &mut Vec<u8>, s: &str) {
            out.extend(((s.len() + 1) as u16).to_le_bytes());
            out.extend(s.as_bytes());
            out.push(0);
        }
        let mut out = BINARY_VERSION.to_le_bytes().to_vec();
        name(&mut out, spec);
        out.extend(3u32.to_le_bytes());
        out.extend((vars.len() as u32).to_le_bytes());
        for (n, shape, code, data) in vars {
            name(&mut out, n);
            out.push(shape.len() as u8);
            for d in shape {
                out.extend((*d as u32).to_le_bytes());
            }
            out.push(*code);
            out.extend((data.len() as u32).to_le_bytes());
            out.extend(data);
        }
        out.extend(0u32.to_le_bytes());
        out
    }

    #[test]
    fn reads_tensors_and_scalars() {
        let bytes = write(
            "WhisperSpec",
            &[
                ("encoder/num_heads", vec![], 2, 6i16.to_le_bytes().to_vec()),
                (
                    "w",
                    vec![2, 1],
                    0,
                    [1f32, 2.0].map(f32::to_le_bytes).concat(),
                ),
            ],
        );
        let m = parse(&bytes).unwrap();
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.variables["encoder/num_heads"].scalar_int(), Some(6));
        assert_eq!(m.variables["w"].shape, [2, 1]);
        assert_eq!(m.variables["w"].dtype, Ct2Dtype::F32);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let bytes = write("S", &[("w", vec![2], 0, vec![0; 8])]);
        for cut in [0, 3, 10, bytes.len() - 5] {
            assert!(parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let wrong_size = write("S", &[("w", vec![3], 0, vec![0; 8])]);
        assert!(matches!(parse(&wrong_size), Err(Ct2Error::Size { .. })));
        let mut trailing = bytes.clone();
        trailing.push(7);
        assert!(matches!(parse(&trailing), Err(Ct2Error::Trailing(1))));
        let mut version = bytes;
        version[0] = 5;
        assert!(matches!(parse(&version), Err(Ct2Error::Version(5))));
    }
}
