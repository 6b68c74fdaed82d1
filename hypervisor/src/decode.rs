//! The one kind of guest instruction the hypervisor completes on the guest's behalf: a 32-bit
//! store to memory, as Linux writes the registers of its interrupt controllers (the local
//! APIC and the I/O APIC, whose pages the nested page table maps read-only so that every
//! write exits: `apic`). QEMU's TCG reports no instruction bytes with a nested page fault (no
//! decode assists, APM §15.33), so the hypervisor fetches them itself and needs only:
//!
//! - `89 /r` MOV r/m32, r32 (Linux's `writel`, `native_apic_mem_write`),
//! - `C7 /0` MOV r/m32, imm32,
//!
//! in 64-bit mode, with legacy prefixes for segments, address size and LOCK, and a REX prefix
//! without W (AMD APM Vol. 3 §1.2-§1.4: prefixes, ModRM, SIB, displacements). Anything else
//! (another opcode, an operand of 8, 16 or 64 bits, a register destination) is refused: the
//! guest gets #GP and no write happens.
//!
//! Where the store goes is not decoded: the nested page fault names the guest-physical
//! address, and the hypervisor checks what is written there against its policy whatever the
//! bytes say. A guest that rewrote its instruction after the fault gains nothing: the value
//! still has to pass that check.

/// The architectural limit of an instruction's length (APM Vol. 3 §1.1).
pub const MAX_LEN: usize = 15;

/// Where a store's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A general-purpose register: 0-15 in the encoding's order (RAX, RCX, RDX, RBX, RSP,
    /// RBP, RSI, RDI, R8-R15), its low 32 bits.
    Register(u8),
    /// An immediate in the instruction.
    Immediate(u32),
}

/// A decoded 32-bit store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Store {
    /// The instruction's length in bytes.
    pub len: u8,
    /// The value stored.
    pub source: Source,
}

/// Why an instruction is not a store the hypervisor completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end (or pass 15) before the instruction does.
    Truncated,
    /// Not one of the two opcodes (the opcode byte).
    Opcode(u8),
    /// An operand size other than 32 bits (a 0x66 prefix or REX.W), or a REP prefix.
    OperandSize,
    /// The ModRM byte names a register, not memory.
    NotMemory,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "the instruction is cut short"),
            DecodeError::Opcode(op) => write!(f, "opcode {op:#04x} is not a 32-bit store"),
            DecodeError::OperandSize => write!(f, "not a 32-bit operand"),
            DecodeError::NotMemory => write!(f, "the destination is a register"),
        }
    }
}

/// Decodes a 32-bit store from the bytes at the guest's RIP (64-bit mode).
pub fn store64(bytes: &[u8]) -> Result<Store, DecodeError> {
    let bytes = &bytes[..bytes.len().min(MAX_LEN)];
    let mut at = 0usize;
    let byte = |i: usize| bytes.get(i).copied().ok_or(DecodeError::Truncated);
    // Legacy prefixes (APM Vol. 3 §1.2): segment overrides, address size and LOCK change
    // neither the length nor the value; operand size and REP do.
    loop {
        match byte(at)? {
            0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65 | 0x67 | 0xF0 => at += 1,
            0x66 | 0xF2 | 0xF3 => return Err(DecodeError::OperandSize),
            _ => break,
        }
    }
    // A REX prefix (§1.2.7) must come last; W makes the operand 64 bits.
    let mut rex_r = 0u8;
    let first = byte(at)?;
    if first & 0xF0 == 0x40 {
        if first & 0x08 != 0 {
            return Err(DecodeError::OperandSize);
        }
        rex_r = (first >> 2 & 1) << 3;
        at += 1;
    }
    let opcode = byte(at)?;
    at += 1;
    let modrm = byte(at)?;
    at += 1;
    let (mode, reg, rm) = (modrm >> 6, modrm >> 3 & 7, modrm & 7);
    match opcode {
        0x89 => {}
        0xC7 if reg == 0 => {}
        other => return Err(DecodeError::Opcode(other)),
    }
    if mode == 3 {
        return Err(DecodeError::NotMemory);
    }
    // SIB and displacement (§1.4): rm 4 brings a SIB byte, whose base 5 under mode 0 means a
    // 32-bit displacement and no base; rm 5 under mode 0 is RIP-relative with a 32-bit one.
    let mut displacement = match mode {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = byte(at)?;
        at += 1;
        if mode == 0 && sib & 7 == 5 {
            displacement = 4;
        }
    } else if mode == 0 && rm == 5 {
        displacement = 4;
    }
    at += displacement;
    let source = if opcode == 0xC7 {
        let imm = [byte(at)?, byte(at + 1)?, byte(at + 2)?, byte(at + 3)?];
        at += 4;
        Source::Immediate(u32::from_le_bytes(imm))
    } else {
        Source::Register(reg | rex_r)
    };
    // The last byte must be there too (a displacement is skipped above, not read).
    byte(at - 1)?;
    let len = u8::try_from(at).map_err(|_| DecodeError::Truncated)?;
    Ok(Store { len, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(len: u8, r: u8) -> Result<Store, DecodeError> {
        Ok(Store { len, source: Source::Register(r) })
    }

    #[test]
    fn linux_apic_writes_decode() {
        // mov %eax,(%rdx)                       89 02
        assert_eq!(store64(&[0x89, 0x02]), reg(2, 0));
        // mov %esi,0xb0(%rax)  (an EOI)         89 b0 b0 00 00 00
        assert_eq!(store64(&[0x89, 0xB0, 0xB0, 0, 0, 0]), reg(6, 6));
        // mov %edi,-0x4fd0(%rip)-ish: RIP-relative 89 3d disp32
        assert_eq!(store64(&[0x89, 0x3D, 1, 2, 3, 4]), reg(6, 7));
        // mov %r12d,0x300(%rbx)                 44 89 a3 00 03 00 00
        assert_eq!(store64(&[0x44, 0x89, 0xA3, 0, 3, 0, 0]), reg(7, 12));
        // mov %eax,0x10(%rdx,%rcx,4)            89 44 8a 10
        assert_eq!(store64(&[0x89, 0x44, 0x8A, 0x10]), reg(4, 0));
        // mov %ecx,(%rsp)                       89 0c 24
        assert_eq!(store64(&[0x89, 0x0C, 0x24]), reg(3, 1));
        // mov %edx,disp32 with SIB, no base     89 14 25 00 03 e0 fe
        assert_eq!(store64(&[0x89, 0x14, 0x25, 0, 3, 0xE0, 0xFE]), reg(7, 2));
        // a GS override and 32-bit addressing:  65 67 89 01
        assert_eq!(store64(&[0x65, 0x67, 0x89, 0x01]), reg(4, 0));
    }

    #[test]
    fn immediates_decode() {
        // movl $0x0,0xb0(%rax)                  c7 80 b0 00 00 00 00 00 00 00
        assert_eq!(
            store64(&[0xC7, 0x80, 0xB0, 0, 0, 0, 0, 0, 0, 0]),
            Ok(Store { len: 10, source: Source::Immediate(0) })
        );
        // movl $0xc4500,(%rax)                  c7 00 00 45 0c 00
        assert_eq!(
            store64(&[0xC7, 0x00, 0x00, 0x45, 0x0C, 0x00]),
            Ok(Store { len: 6, source: Source::Immediate(0xC4500) })
        );
        // lock mov %r9d,(%rdi)                  f0 44 89 0f
        assert_eq!(store64(&[0xF0, 0x44, 0x89, 0x0F]), reg(4, 9));
    }

    #[test]
    fn everything_else_is_refused() {
        // 16- and 64-bit operands, REP.
        assert_eq!(store64(&[0x66, 0x89, 0x02]), Err(DecodeError::OperandSize));
        assert_eq!(store64(&[0x48, 0x89, 0x02]), Err(DecodeError::OperandSize));
        assert_eq!(store64(&[0xF3, 0xAB]), Err(DecodeError::OperandSize));
        // Byte stores, reads, exchanges, a register destination, C7 with reg != 0.
        assert_eq!(store64(&[0x87, 0x02]), Err(DecodeError::Opcode(0x87)));
        assert_eq!(store64(&[0x88, 0x02]), Err(DecodeError::Opcode(0x88)));
        assert_eq!(store64(&[0x8B, 0x02]), Err(DecodeError::Opcode(0x8B)));
        assert_eq!(store64(&[0x89, 0xC0]), Err(DecodeError::NotMemory));
        assert_eq!(store64(&[0xC7, 0x08, 0, 0, 0, 0]), Err(DecodeError::Opcode(0xC7)));
        // A REX prefix not right before the opcode is an opcode of its own here.
        assert_eq!(store64(&[0x44, 0x65, 0x89, 0x02]), Err(DecodeError::Opcode(0x65)));
    }

    #[test]
    fn short_or_endless_bytes_are_refused() {
        assert_eq!(store64(&[]), Err(DecodeError::Truncated));
        assert_eq!(store64(&[0x89]), Err(DecodeError::Truncated));
        assert_eq!(store64(&[0x89, 0xB0, 0xB0, 0, 0]), Err(DecodeError::Truncated));
        assert_eq!(store64(&[0x89, 0x04]), Err(DecodeError::Truncated));
        assert_eq!(store64(&[0xC7, 0x00, 1, 2, 3]), Err(DecodeError::Truncated));
        // Fifteen prefixes and nothing else: past the architectural limit.
        assert_eq!(store64(&[0x2E; 20]), Err(DecodeError::Truncated));
        // Fourteen prefixes and a 2-byte store: 16 bytes, one too many.
        let mut long = [0x2Eu8; 16];
        long[14] = 0x89;
        long[15] = 0x02;
        assert_eq!(store64(&long), Err(DecodeError::Truncated));
        // Thirteen prefixes and a 2-byte store: exactly 15.
        let mut fits = [0x2Eu8; 15];
        fits[13] = 0x89;
        fits[14] = 0x02;
        assert_eq!(store64(&fits), reg(15, 0));
    }
}
