//! A small eBPF instruction builder: the handful of instruction classes
//! the drop program uses (64-bit ALU, loads and stores, conditional jumps
//! to labels, helper calls, `ld_imm64` of a map descriptor), encoded as
//! the kernel's `struct bpf_insn` (Documentation/bpf/standardization/
//! instruction-set.rst). Jumps go to labels resolved in [`Asm::finish`],
//! so a program is written top to bottom without counting instructions.

/// Registers: r0 return value, r1-r5 arguments (clobbered by calls),
/// r6-r9 kept across calls, r10 the read-only frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const R10: Reg = Reg(10);

/// One `struct bpf_insn`: opcode, dst (low nibble) and src registers,
/// offset, immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Classes, sources, sizes and operations (uapi/linux/bpf_common.h, bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const ALU: u8 = 0x04;
const K: u8 = 0x00;
const X: u8 = 0x08;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const DW: u8 = 0x18;
const MOV: u8 = 0xb0;
const ADD: u8 = 0x00;
const OR: u8 = 0x40;
const END: u8 = 0xd0;
const TO_BE: u8 = 0x08;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const JA: u8 = 0x00;
/// `ld_imm64` with this src register loads a map by its descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// Access sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    DW = 0x18,
}

/// Conditional jumps (64-bit compares; `S*`: signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq = 0x10,
    Ne = 0x50,
    Gt = 0x20,
    Ge = 0x30,
    Lt = 0xa0,
    Le = 0xb0,
    Sgt = 0x60,
    Sge = 0x70,
    Slt = 0xc0,
    Sle = 0xd0,
}

/// A place in the program jumps can go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Instructions being written, with jumps waiting for their labels.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Label -> instruction index, once placed.
    labels: Vec<Option<usize>>,
    /// (instruction index, label) of each jump.
    jumps: Vec<(usize, Label)>,
}

fn regs(dst: Reg, src: Reg) -> u8 {
    (src.0 << 4) | (dst.0 & 0x0f)
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn { code, regs: regs(dst, src), off, imm });
        self
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Place `l` at the next instruction.
    pub fn bind(&mut self, l: Label) -> &mut Self {
        if let Some(slot) = self.labels.get_mut(l.0) {
            *slot = Some(self.insns.len());
        }
        self
    }

    /// dst = src (64 bits).
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(ALU64 | MOV | X, dst, src, 0, 0)
    }

    /// dst = imm (sign-extended to 64 bits).
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | MOV | K, dst, R0, 0, imm)
    }

    /// dst += imm.
    pub fn add_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | ADD | K, dst, R0, 0, imm)
    }

    /// dst |= imm.
    pub fn or_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | OR | K, dst, R0, 0, imm)
    }

    /// dst += src.
    pub fn add(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(ALU64 | ADD | X, dst, src, 0, 0)
    }

    /// The low 16 bits of dst from network to host order (and the rest
    /// cleared).
    pub fn be16(&mut self, dst: Reg) -> &mut Self {
        self.push(ALU | END | TO_BE, dst, R0, 0, 16)
    }

    /// dst = imm64 (two instruction slots).
    pub fn ld_imm64(&mut self, dst: Reg, imm: i64) -> &mut Self {
        self.push(LD | IMM | DW, dst, R0, 0, imm as i32);
        self.push(0, R0, R0, 0, (imm >> 32) as i32)
    }

    /// dst = the map of descriptor `fd` (the kernel swaps in its address).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        self.push(LD | IMM | DW, dst, Reg(PSEUDO_MAP_FD), 0, fd);
        self.push(0, R0, R0, 0, 0)
    }

    /// dst = *(size *)(src + off).
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(LDX | MEM | size as u8, dst, src, off, 0)
    }

    /// *(size *)(dst + off) = src.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(STX | MEM | size as u8, dst, src, off, 0)
    }

    /// *(size *)(dst + off) = imm.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(ST | MEM | size as u8, dst, R0, off, imm)
    }

    /// if dst COND imm goto l.
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, l: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), l));
        self.push(JMP | cond as u8 | K, dst, R0, 0, imm)
    }

    /// if dst COND src goto l.
    pub fn jump_reg(&mut self, cond: Cond, dst: Reg, src: Reg, l: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), l));
        self.push(JMP | cond as u8 | X, dst, src, 0, 0)
    }

    /// goto l.
    pub fn goto(&mut self, l: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), l));
        self.push(JMP | JA, R0, R0, 0, 0)
    }

    /// Call kernel helper number `helper` (arguments in r1-r5).
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(JMP | CALL, R0, R0, 0, helper)
    }

    pub fn exit(&mut self) -> &mut Self {
        self.push(JMP | EXIT, R0, R0, 0, 0)
    }

    /// The instructions, every jump pointing at its label; an error
    /// names a label never placed or a jump too far for 16 bits.
    pub fn finish(mut self) -> Result<Vec<Insn>, String> {
        for &(at, l) in &self.jumps {
            let to = self.labels.get(l.0).copied().flatten().ok_or_else(|| format!("label {} not placed", l.0))?;
            let off = to as i64 - at as i64 - 1;
            let off = i16::try_from(off).map_err(|_| format!("jump {at} -> {to} too far"))?;
            if let Some(i) = self.insns.get_mut(at) {
                i.off = off;
            }
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_kernel_does() {
        let mut a = Asm::new();
        let end = a.label();
        a.mov(R6, R1) // 0xbf, dst 6 src 1
            .load(Size::DW, R7, R6, 8) // 0x79
            .jump_imm(Cond::Eq, R7, 0, end) // 0x15
            .store_imm(Size::W, R10, -8, 7) // 0x62
            .ld_map_fd(R2, 5) // 0x18 src 1, then a zero slot
            .be16(R3) // 0xdc imm 16
            .call(113)
            .bind(end)
            .mov_imm(R0, 0)
            .exit();
        let insns = a.finish().unwrap();
        let raw: Vec<(u8, u8, i16, i32)> = insns.iter().map(|i| (i.code, i.regs, i.off, i.imm)).collect();
        assert_eq!(
            raw,
            [
                (0xbf, 0x16, 0, 0),
                (0x79, 0x67, 8, 0),
                (0x15, 0x07, 5, 0),
                (0x62, 0x0a, -8, 7),
                (0x18, 0x12, 0, 5),
                (0x00, 0x00, 0, 0),
                (0xdc, 0x03, 0, 16),
                (0x85, 0x00, 0, 113),
                (0xb7, 0x00, 0, 0),
                (0x95, 0x00, 0, 0),
            ]
        );
        let mut a = Asm::new();
        let nowhere = a.label();
        a.goto(nowhere);
        assert!(a.finish().is_err());
    }
}
