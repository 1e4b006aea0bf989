//! A big-endian bit reader with Exp-Golomb codes, for H.264 parameter sets and AAC configs.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bitstream ended early")]
pub struct EndOfData;

pub struct BitReader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, position: 0 }
    }

    pub fn bit(&mut self) -> Result<u32, EndOfData> {
        let byte = *self.data.get(self.position / 8).ok_or(EndOfData)?;
        let bit = (byte >> (7 - self.position % 8)) & 1;
        self.position += 1;
        Ok(u32::from(bit))
    }

    pub fn bits(&mut self, count: u32) -> Result<u32, EndOfData> {
        debug_assert!(count <= 32);
        let mut value = 0u32;
        for _ in 0..count {
            value = (value << 1) | self.bit()?;
        }
        Ok(value)
    }

    pub fn flag(&mut self) -> Result<bool, EndOfData> {
        Ok(self.bit()? == 1)
    }

    /// Unsigned Exp-Golomb `ue(v)`.
    pub fn ue(&mut self) -> Result<u32, EndOfData> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(EndOfData);
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    /// Signed Exp-Golomb `se(v)`.
    pub fn se(&mut self) -> Result<i32, EndOfData> {
        let code = i64::from(self.ue()?);
        Ok(if code % 2 == 1 { (code + 1) / 2 } else { -(code / 2) } as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_codes_decode() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3, 4
        let mut reader = BitReader::new(&[0b1010_0110, 0b0100_0010, 0b1000_0000]);
        assert_eq!(
            [reader.ue(), reader.ue(), reader.ue(), reader.ue(), reader.ue()],
            [Ok(0), Ok(1), Ok(2), Ok(3), Ok(4)]
        );
        // se: 1 -> 0, 010 -> 1, 011 -> -1
        let mut reader = BitReader::new(&[0b1010_0110]);
        assert_eq!([reader.se(), reader.se(), reader.se()], [Ok(0), Ok(1), Ok(-1)]);
        assert_eq!(BitReader::new(&[0]).ue(), Err(EndOfData));
    }
}
