//! Reading `N x D` float32 arrays from NumPy `.npy` files (format versions 1–3), for `pack`.
//! Only what externally trained embeddings use: little-endian `<f4`, C order, two dimensions.

use anyhow::{bail, ensure, Context as _, Result};
use std::path::Path;

/// Rows, columns and the values in row-major order.
pub fn read_f32_matrix(path: &Path) -> Result<(usize, usize, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{} is not a usable .npy file", path.display()))
}

pub fn parse(bytes: &[u8]) -> Result<(usize, usize, Vec<f32>)> {
    ensure!(
        bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY",
        "missing the .npy magic"
    );
    let major = bytes[6];
    let (header_len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated header");
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => bail!("unsupported .npy version {v}"),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .context("truncated header")?;
    let header = std::str::from_utf8(&bytes[start..end]).context("header is not text")?;
    let field = |name: &str| -> Result<&str> {
        let at = header
            .find(&format!("'{name}'"))
            .with_context(|| format!("header has no '{name}'"))?;
        let rest = &header[at + name.len() + 2..];
        Ok(rest.trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")?;
    ensure!(
        descr.starts_with("'<f4'") || descr.starts_with("'float32'"),
        "dtype must be little-endian float32 ('<f4'), found {}",
        descr.split(',').next().unwrap_or("")
    );
    ensure!(
        field("fortran_order")?.starts_with("False"),
        "Fortran-order arrays are not supported; save with np.ascontiguousarray"
    );
    let shape = field("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .context("malformed shape")?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().context("malformed shape"))
        .collect::<Result<_>>()?;
    ensure!(
        dims.len() == 2,
        "expected a 2-D array (N x D), found shape ({inner})"
    );
    let (n, d) = (dims[0], dims[1]);
    let data = &bytes[end..];
    let need = n
        .checked_mul(d)
        .and_then(|x| x.checked_mul(4))
        .context("shape overflows")?;
    ensure!(
        data.len() == need,
        "data has {} bytes, shape ({n}, {d}) needs {need}",
        data.len()
    );
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "value at row {}, column {} is not finite",
            i / d.max(1),
            i % d.max(1)
        );
    }
    Ok((n, d, values))
}

#[cfg(test)]
pub fn write(n: usize, d: usize, values: &[f32]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let bytes = write(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(
            parse(&bytes).unwrap(),
            (3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        assert!(parse(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string()
            .contains("needs"));
        assert!(parse(b"not numpy").is_err());
        let mut f8 = bytes.clone();
        let at = f8.windows(3).position(|w| w == b"<f4").unwrap();
        f8[at + 2] = b'8';
        assert!(parse(&f8).unwrap_err().to_string().contains("float32"));
        let nan = write(1, 2, &[1.0, f32::NAN]);
        assert!(parse(&nan)
            .unwrap_err()
            .to_string()
            .contains("row 0, column 1"));
    }
}
