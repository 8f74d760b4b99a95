//! The sizes in a Parquet page header, read from its Thrift compact
//! encoding without decoding the page.
//!
//! The parquet reader allocates a page's `uncompressed_page_size` before it
//! decompresses (and checks the result against it), so that number, not the
//! column chunk's total in the footer, is what one page can cost in memory.
//! The parquet crate keeps its `PageHeader` type private; this reads the two
//! sizes and skips every other field, bounded in depth and length.

/// The sizes of one page and how many bytes its header took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSizes {
    pub header_len: usize,
    pub uncompressed: i32,
    pub compressed: i32,
}

/// Nested structs deeper than this are not a page header.
const MAX_DEPTH: u32 = 16;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, String>;

impl Reader<'_> {
    fn byte(&mut self) -> R<u8> {
        let b = *self.buf.get(self.pos).ok_or("page header runs past the bytes read")?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> R<()> {
        let n = usize::try_from(n).map_err(|_| "page header field too long")?;
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("page header runs past the bytes read")?;
        self.pos = end;
        Ok(())
    }

    fn varint(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("page header varint too long".into())
    }

    fn zigzag_i32(&mut self) -> R<i32> {
        let v = self.varint()?;
        let v = ((v >> 1) as i64) ^ -((v & 1) as i64);
        i32::try_from(v).map_err(|_| "page header size out of range".to_string())
    }

    /// Skip one value of compact type `ty`.
    fn skip_value(&mut self, ty: u8, depth: u32) -> R<()> {
        if depth > MAX_DEPTH {
            return Err("page header nested too deep".into());
        }
        match ty {
            1 | 2 => Ok(()),                  // bool in a field header
            3 => self.skip(1),                // byte
            4..=6 => self.varint().map(drop), // i16, i32, i64
            7 => self.skip(8),                // double
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = if h >> 4 == 15 { self.varint()? } else { u64::from(h >> 4) };
                for _ in 0..n {
                    // Booleans inside lists take one byte each.
                    match h & 0x0f {
                        1 | 2 => self.skip(1)?,
                        t => self.skip_value(t, depth + 1)?,
                    }
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.skip_value(kv >> 4, depth + 1)?;
                    self.skip_value(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.skip_struct(depth + 1),
            13 => self.skip(16),
            t => Err(format!("page header has an unknown field type {t}")),
        }
    }

    fn field_header(&mut self, last: i16) -> R<Option<(i16, u8)>> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let (delta, ty) = (b >> 4, b & 0x0f);
        let id = if delta == 0 {
            i16::try_from(self.zigzag_i32()?).map_err(|_| "page header field id out of range")?
        } else {
            last.checked_add(i16::from(delta)).ok_or("page header field id out of range")?
        };
        Ok(Some((id, ty)))
    }

    fn skip_struct(&mut self, depth: u32) -> R<()> {
        let mut last = 0;
        while let Some((id, ty)) = self.field_header(last)? {
            self.skip_value(ty, depth)?;
            last = id;
        }
        Ok(())
    }
}

/// Read the page header at the start of `buf`.
pub fn read(buf: &[u8]) -> Result<PageSizes, String> {
    let mut r = Reader { buf, pos: 0 };
    let (mut uncompressed, mut compressed) = (None, None);
    let mut last = 0;
    while let Some((id, ty)) = r.field_header(last)? {
        match (id, ty) {
            (2, 5) => uncompressed = Some(r.zigzag_i32()?),
            (3, 5) => compressed = Some(r.zigzag_i32()?),
            _ => r.skip_value(ty, 0)?,
        }
        last = id;
    }
    match (uncompressed, compressed) {
        (Some(u), Some(c)) if u >= 0 && c >= 0 => Ok(PageSizes { header_len: r.pos, uncompressed: u, compressed: c }),
        _ => Err("page header without valid sizes".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::metadata::ParquetMetaDataReader;
    use datafusion::parquet::file::properties::WriterProperties;

    /// Pages written by the parquet crate: walking each column chunk's
    /// headers lands exactly on its end, and the page sizes add up to the
    /// chunk's totals in the footer.
    #[test]
    fn walks_the_pages_the_parquet_writer_writes() {
        let n = 50_000;
        let s: ArrayRef = Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("value-{}", i % 977))));
        let i: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
        let batch = RecordBatch::try_from_iter([("s", s), ("i", i)]).unwrap();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_data_page_size_limit(16 << 10)
            .set_max_row_group_row_count(Some(20_000))
            .build();
        let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        let data = w.into_inner().unwrap();
        let meta = ParquetMetaDataReader::new().parse_and_finish(&bytes::Bytes::from(data.clone())).unwrap();
        assert_eq!(meta.num_row_groups(), 3);
        let mut pages = 0;
        for rg in meta.row_groups() {
            for col in rg.columns() {
                let (start, len) = col.byte_range();
                let (mut pos, end) = (start as usize, (start + len) as usize);
                let (mut unc, mut comp) = (0i64, 0i64);
                while pos < end {
                    let p = read(&data[pos..end]).unwrap();
                    unc += (p.header_len as i64) + i64::from(p.uncompressed);
                    comp += (p.header_len as i64) + i64::from(p.compressed);
                    pos += p.header_len + p.compressed as usize;
                    pages += 1;
                }
                assert_eq!(pos, end);
                assert_eq!(comp, col.compressed_size());
                assert_eq!(unc, col.uncompressed_size());
            }
        }
        assert!(pages > 12, "{pages} pages");
    }

    #[test]
    fn refuses_truncated_and_garbage_headers() {
        assert!(read(&[]).is_err());
        assert!(read(&[0x15]).is_err());
        assert!(read(&[0x00]).is_err()); // no sizes
        assert!(read(&[0x1c; 64]).is_err()); // structs nested without end
                                             // type=0, uncompressed=-1, compressed=4: a negative size.
        assert!(read(&[0x15, 0x00, 0x15, 0x01, 0x15, 0x08, 0x00]).is_err());
        assert_eq!(
            read(&[0x15, 0x00, 0x15, 0x10, 0x15, 0x08, 0x00]),
            Ok(PageSizes { header_len: 7, uncompressed: 8, compressed: 4 })
        );
    }
}
