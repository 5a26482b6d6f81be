//! Scratch memory planning. `run` needs two activation buffers (the residual stream and the
//! block's depthwise/LN output), the 4C-wide hidden buffer of one block, and a little scratch.
//! Each region is sized for the largest stage; ConvNeXt halves P·C at each stage, so this total
//! equals the largest live set (stage 0: 2·P·C + 4·P·C floats).

use crate::arch::{Arch, MLP_RATIO};
use crate::Error;

/// Byte alignment `run` gives every region (NEON- and cache-friendly).
pub const ARENA_ALIGN: usize = 16;

/// Sizes (in f32 elements) of the arena's regions for one architecture and input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaPlan {
    /// One activation buffer: max over stages of H·W·C (two of these).
    pub act: usize,
    /// The block's hidden buffer: max over stages of H·W·4C (also stages the input image).
    pub hidden: usize,
    /// Per-channel scratch: GRN norms (4C) and the pooled head vector.
    pub scratch: usize,
    /// Largest set of floats live at one time (the lower bound any plan must meet).
    pub live_set: usize,
}

fn round16(n: usize) -> Option<usize> {
    n.checked_add(15).map(|v| v & !15)
}

impl ArenaPlan {
    /// A plan of zero size.
    pub const EMPTY: ArenaPlan = ArenaPlan {
        act: 0,
        hidden: 0,
        scratch: 0,
        live_set: 0,
    };

    /// The plan for `arch`, or `None` if its sizes overflow `usize` on this target.
    pub fn for_arch(arch: &Arch) -> Option<Self> {
        let (mut act, mut hidden, mut scratch, mut live) =
            (0usize, 0usize, arch.last_dim(), 0usize);
        for s in 0..arch.num_stages {
            let (h, w) = arch.stage_hw(s);
            let pc = h.checked_mul(w)?.checked_mul(arch.dims[s])?;
            let hid = pc.checked_mul(MLP_RATIO)?;
            act = act.max(pc);
            hidden = hidden.max(hid);
            scratch = scratch.max(arch.dims[s].checked_mul(MLP_RATIO)?);
            live = live.max(pc.checked_mul(2)?.checked_add(hid)?);
        }
        let input = arch
            .input_h
            .checked_mul(arch.input_w)?
            .checked_mul(arch.in_chans)?;
        hidden = hidden.max(input);
        let plan = ArenaPlan {
            act: round16(act)?,
            hidden: round16(hidden)?,
            scratch: round16(scratch)?,
            live_set: live,
        };
        plan.total_floats()?
            .checked_mul(4)?
            .checked_add(ARENA_ALIGN)?;
        Some(plan)
    }

    fn total_floats(&self) -> Option<usize> {
        self.act
            .checked_mul(2)?
            .checked_add(self.hidden)?
            .checked_add(self.scratch)
    }

    /// Bytes the caller must pass: the regions plus slack to align a buffer of any alignment.
    pub fn arena_len(&self) -> usize {
        self.total_floats().unwrap_or(0) * 4 + ARENA_ALIGN - 1
    }

    /// Bytes of the largest live set (report: how close the plan is to the lower bound).
    pub fn live_set_bytes(&self) -> usize {
        self.live_set * 4
    }

    /// Splits a caller's buffer into the planned regions.
    pub(crate) fn split<'b>(&self, arena: &'b mut [u8]) -> Result<Regions<'b>, Error> {
        let needed = self.arena_len();
        let got = arena.len();
        let skip = arena.as_ptr().align_offset(ARENA_ALIGN);
        let floats = self.total_floats().unwrap_or(usize::MAX);
        let bytes = floats
            .checked_mul(4)
            .ok_or(Error::ArenaTooSmall { needed, got })?;
        let end = skip
            .checked_add(bytes)
            .ok_or(Error::ArenaTooSmall { needed, got })?;
        let Some(region) = arena.get_mut(skip..end) else {
            return Err(Error::ArenaTooSmall { needed, got });
        };
        let all: &mut [f32] = bytemuck::try_cast_slice_mut(region)
            .map_err(|_| Error::ArenaTooSmall { needed, got })?;
        let (a, rest) = all.split_at_mut(self.act);
        let (b, rest) = rest.split_at_mut(self.act);
        let (hidden, scratch) = rest.split_at_mut(self.hidden);
        Ok(Regions {
            a,
            b,
            hidden,
            scratch,
        })
    }
}

/// The arena cut into its regions.
pub(crate) struct Regions<'b> {
    pub a: &'b mut [f32],
    pub b: &'b mut [f32],
    pub hidden: &'b mut [f32],
    pub scratch: &'b mut [f32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atto_plan_equals_live_set() {
        let a = Arch::named("atto", 1000, 224, 224).unwrap();
        let p = ArenaPlan::for_arch(&a).unwrap();
        assert_eq!(p.act, 56 * 56 * 40);
        assert_eq!(p.hidden, 56 * 56 * 160);
        assert_eq!(p.live_set, 6 * 56 * 56 * 40);
        // Only the 4C GRN scratch (1280 floats) and alignment slack above the live set.
        assert_eq!(p.arena_len(), p.live_set_bytes() + 1280 * 4 + 15);
    }

    #[test]
    fn split_handles_any_alignment_and_short_buffers() {
        let a = Arch::new([1, 1, 1, 1], [8, 16, 24, 32], 3, 32, 32);
        let p = ArenaPlan::for_arch(&a).unwrap();
        let mut buf = [0u8; 32768];
        for off in 0..16 {
            let len = p.arena_len();
            assert!(p.split(&mut buf[off..off + len]).is_ok());
            let short = p.split(&mut buf[off..off + len - 16 - 1]);
            assert!(matches!(short, Err(Error::ArenaTooSmall { needed, .. }) if needed == len));
        }
    }
}
