//! The forwarded position: the first entry not yet confirmed by every sink, kept in a
//! small file replaced atomically (write, fsync, rename, fsync the directory).

use std::io;
use std::path::Path;

use crate::store::fs::replace_file;

const FILE: &str = "forwarded";

/// The stored position, 0 when there is none (a new spool) or it cannot be read: then
/// entries are forwarded again, which sinks receive as duplicates with the same ids.
pub fn load(dir: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(dir.join(FILE)) else {
        return 0;
    };
    if bytes.len() != 12 {
        tracing::warn!("spool checkpoint is damaged; forwarding from the oldest entry");
        return 0;
    }
    let seq = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[8..].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..8]) != crc {
        tracing::warn!("spool checkpoint is damaged; forwarding from the oldest entry");
        return 0;
    }
    seq
}

pub fn store(dir: &Path, forwarded: u64) -> io::Result<()> {
    let mut bytes = forwarded.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    replace_file(&dir.join(FILE), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_position_loads_and_a_damaged_one_reads_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), 0);
        store(dir.path(), 12345).unwrap();
        assert_eq!(load(dir.path()), 12345);
        std::fs::write(dir.path().join(FILE), [1u8; 12]).unwrap();
        assert_eq!(load(dir.path()), 0);
    }
}
