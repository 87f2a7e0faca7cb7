//! Batch records for `uring.rs`: what JS puts in the ops Float64Array, and the checks every
//! record passes before anything reaches the kernel (pure, so unit-tested without a ring).

/// f64 fields per record: opcode, fd, slabOffsetBytes, lengthBytes, fileOffsetBytes, flags.
pub const RECORD_F64S: usize = 6;
pub const OP_READ: f64 = 1.0;
pub const OP_WRITE: f64 = 2.0;
/// A FUA write: pwritev2(RWF_DSYNC) semantics, on stable storage when it completes.
pub const OP_WRITE_DSYNC: f64 = 3.0;
pub const OP_FDATASYNC: f64 = 4.0;
/// Linux caps one read/write at MAX_RW_COUNT (INT_MAX rounded down to a page); a longer record
/// would only come back short, so it is refused instead.
const LENGTH_MAX: u64 = 0x7fff_f000;
const SAFE_INTEGER_MAX: f64 = 9_007_199_254_740_991.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    WriteDsync,
    Fdatasync,
}

/// One validated record; `slab_offset` is relative to the registered slab view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub fd: i32,
    pub slab_offset: u64,
    pub length: u32,
    pub file_offset: u64,
}

fn exact(value: f64, index: usize, what: &str) -> Result<u64, String> {
    let ok = value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= SAFE_INTEGER_MAX;
    if !ok {
        return Err(format!(
            "record {index}: {what} must be a non-negative integer, got {value}"
        ));
    }
    Ok(value as u64)
}

fn kind_of(value: f64, index: usize) -> Result<Kind, String> {
    match value {
        OP_READ => Ok(Kind::Read),
        OP_WRITE => Ok(Kind::Write),
        OP_WRITE_DSYNC => Ok(Kind::WriteDsync),
        OP_FDATASYNC => Ok(Kind::Fdatasync),
        _ => Err(format!("record {index}: unknown opcode {value}")),
    }
}

/// Checks one record against the registered slab length (None: no slab registered yet).
pub fn parse_record(rec: &[f64], index: usize, slab_bytes: Option<u64>) -> Result<Record, String> {
    assert_eq!(rec.len(), RECORD_F64S);
    let kind = kind_of(rec[0], index)?;
    let fd = exact(rec[1], index, "fd")?;
    if fd > i32::MAX as u64 {
        return Err(format!("record {index}: fd {fd} out of range"));
    }
    let slab_offset = exact(rec[2], index, "slabOffsetBytes")?;
    let length = exact(rec[3], index, "lengthBytes")?;
    let file_offset = exact(rec[4], index, "fileOffsetBytes")?;
    if rec[5] != 0.0 {
        return Err(format!(
            "record {index}: flags must be 0 (reserved), got {}",
            rec[5]
        ));
    }
    let record = Record {
        kind,
        fd: fd as i32,
        slab_offset,
        length: 0,
        file_offset,
    };
    if kind == Kind::Fdatasync {
        if slab_offset != 0 || length != 0 || file_offset != 0 {
            return Err(format!(
                "record {index}: FDATASYNC takes no range (offsets and length must be 0)"
            ));
        }
        return Ok(record);
    }
    if length == 0 || length > LENGTH_MAX {
        return Err(format!(
            "record {index}: lengthBytes {length} outside [1, {LENGTH_MAX}]"
        ));
    }
    let Some(slab) = slab_bytes else {
        return Err(format!(
            "record {index}: no slab registered (call registerSlab first)"
        ));
    };
    if slab_offset > slab || length > slab - slab_offset {
        return Err(format!(
            "record {index}: slab range [{slab_offset}, +{length}) outside the registered slab of {slab} bytes"
        ));
    }
    Ok(Record {
        length: length as u32,
        ..record
    })
}

/// Checks a whole batch into `out` (cleared first); nothing is submitted unless all of it passes.
pub fn parse_batch(
    ops: &[f64],
    count: usize,
    entries: u32,
    results_len: usize,
    slab_bytes: Option<u64>,
    out: &mut Vec<Record>,
) -> Result<(), String> {
    out.clear();
    if count == 0 || count > entries as usize {
        return Err(format!(
            "count {count} outside [1, {entries}] (the ring's entries)"
        ));
    }
    if ops.len() < count * RECORD_F64S {
        return Err(format!(
            "ops holds {} numbers, {count} records need {}",
            ops.len(),
            count * RECORD_F64S
        ));
    }
    if results_len < count {
        return Err(format!(
            "results holds {results_len} entries, {count} records need {count}"
        ));
    }
    for (index, rec) in ops.chunks_exact(RECORD_F64S).take(count).enumerate() {
        out.push(parse_record(rec, index, slab_bytes)?);
    }
    debug_assert_eq!(out.len(), count);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: f64, fd: f64, slab: f64, len: f64, file: f64) -> [f64; RECORD_F64S] {
        [op, fd, slab, len, file, 0.0]
    }

    #[test]
    fn accepts_reads_writes_and_syncs_inside_the_slab() {
        let r = parse_record(&rec(OP_READ, 5.0, 4096.0, 4096.0, 1e9), 0, Some(8192)).unwrap();
        assert_eq!(
            r,
            Record {
                kind: Kind::Read,
                fd: 5,
                slab_offset: 4096,
                length: 4096,
                file_offset: 1_000_000_000
            }
        );
        assert_eq!(
            parse_record(&rec(OP_WRITE_DSYNC, 0.0, 0.0, 8192.0, 0.0), 0, Some(8192))
                .unwrap()
                .kind,
            Kind::WriteDsync
        );
        let sync = parse_record(&rec(OP_FDATASYNC, 3.0, 0.0, 0.0, 0.0), 0, None).unwrap();
        assert_eq!((sync.kind, sync.length), (Kind::Fdatasync, 0));
    }

    #[test]
    fn refuses_ranges_outside_the_slab() {
        assert!(
            parse_record(&rec(OP_READ, 5.0, 4096.0, 4097.0, 0.0), 0, Some(8192))
                .unwrap_err()
                .contains("outside the registered slab")
        );
        assert!(parse_record(&rec(OP_READ, 5.0, 8193.0, 1.0, 0.0), 0, Some(8192)).is_err());
        assert!(parse_record(&rec(OP_WRITE, 5.0, 0.0, 1.0, 0.0), 0, None)
            .unwrap_err()
            .contains("no slab registered"));
        assert!(
            parse_record(&rec(OP_READ, 5.0, 0.0, 0.0, 0.0), 0, Some(8192))
                .unwrap_err()
                .contains("lengthBytes 0")
        );
    }

    #[test]
    fn refuses_non_integers_bad_opcodes_and_flags() {
        for bad in [-1.0, 1.5, f64::NAN, f64::INFINITY, 2f64.powi(60)] {
            assert!(
                parse_record(&rec(OP_READ, 5.0, 0.0, 512.0, bad), 0, Some(8192)).is_err(),
                "{bad} accepted"
            );
            assert!(
                parse_record(&rec(OP_READ, bad, 0.0, 512.0, 0.0), 0, Some(8192)).is_err(),
                "fd {bad} accepted"
            );
        }
        assert!(parse_record(&rec(0.0, 5.0, 0.0, 512.0, 0.0), 2, Some(8192))
            .unwrap_err()
            .starts_with("record 2: unknown opcode"));
        assert!(parse_record(&rec(OP_FDATASYNC, 5.0, 0.0, 512.0, 0.0), 0, Some(8192)).is_err());
        let mut flagged = rec(OP_READ, 5.0, 0.0, 512.0, 0.0);
        flagged[5] = 1.0;
        assert!(parse_record(&flagged, 0, Some(8192))
            .unwrap_err()
            .contains("flags"));
        assert!(parse_record(&rec(OP_READ, 3e9, 0.0, 512.0, 0.0), 0, Some(8192)).is_err());
    }

    #[test]
    fn a_batch_is_refused_whole() {
        let mut out = Vec::new();
        let mut ops = Vec::new();
        ops.extend(rec(OP_READ, 5.0, 0.0, 512.0, 0.0));
        ops.extend(rec(OP_READ, 5.0, 0.0, 1e6, 0.0)); // past the slab
        assert!(parse_batch(&ops, 2, 32, 2, Some(8192), &mut out)
            .unwrap_err()
            .starts_with("record 1"));
        assert!(parse_batch(&ops, 1, 32, 1, Some(8192), &mut out).is_ok());
        assert_eq!(out.len(), 1);
        assert!(parse_batch(&ops, 3, 32, 3, Some(8192), &mut out)
            .unwrap_err()
            .contains("need 18"));
        assert!(parse_batch(&ops, 2, 1, 2, Some(8192), &mut out)
            .unwrap_err()
            .contains("outside [1, 1]"));
        assert!(parse_batch(&ops, 0, 32, 2, Some(8192), &mut out).is_err());
        assert!(parse_batch(&ops, 1, 32, 0, Some(8192), &mut out)
            .unwrap_err()
            .contains("results"));
    }
}
