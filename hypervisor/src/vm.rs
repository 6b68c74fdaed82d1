//! The architecture-neutral core: guest registers, normalized exits and the exit loop.
//!
//! An architecture (today [`crate::svm`]) turns its raw exit codes into a [`VmExit`] and
//! implements [`Vcpu`]; [`run`] drives any such vCPU, the one exit loop of the hypervisor,
//! asking an [`ExitPolicy`] what each exit means: [`Isolated`] for PALs and test guests
//! (hypercalls, and nothing else), `crate::svm::os_policy::OsPolicy` for the Linux guest. A
//! guest that exits for a reason its policy does not handle is killed with a [`KillReason`]
//! that carries the evidence: a misbehaving guest never brings the hypervisor down.

use core::fmt;

/// A guest's general-purpose registers other than RSP, as the world switch saves them.
///
/// SVM keeps the guest's RAX and RSP in the VMCB and swaps only those (APM §15.5.1); the world
/// switch saves and restores the rest itself. `rax` here mirrors the VMCB's copy: the vCPU
/// copies it in before entering the guest and out after each exit, so hypercall handlers see
/// one coherent register file.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs, reason = "the fields are the registers of the same names")]
pub struct GuestRegisters {
    pub rax: u64, // +0x00
    pub rbx: u64, // +0x08
    pub rcx: u64, // +0x10
    pub rdx: u64, // +0x18
    pub rsi: u64, // +0x20
    pub rdi: u64, // +0x28
    pub rbp: u64, // +0x30
    pub r8: u64,  // +0x38
    pub r9: u64,  // +0x40
    pub r10: u64, // +0x48
    pub r11: u64, // +0x50
    pub r12: u64, // +0x58
    pub r13: u64, // +0x60
    pub r14: u64, // +0x68
    pub r15: u64, // +0x70
}

const _: () = assert!(size_of::<GuestRegisters>() == 0x78);
const _: () = assert!(core::mem::offset_of!(GuestRegisters, rbx) == 0x08);
const _: () = assert!(core::mem::offset_of!(GuestRegisters, r15) == 0x70);

/// Why a guest stopped running, independent of the virtualization extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// The guest called the hypervisor (VMMCALL on SVM).
    Hypercall,
    /// The guest executed HLT.
    Halt,
    /// A guest-physical access found no (or a too weak) nested translation.
    NestedPageFault {
        /// The guest-physical address accessed.
        gpa: u64,
        /// The architecture's fault information (on SVM: EXITINFO1, a page-fault error code
        /// in bits 31:0 and the walk stage in bits 33:32, APM §15.25.6).
        error: u64,
    },
    /// The guest shut down (a triple fault).
    Shutdown,
    /// An NMI arrived while the guest ran (and the guest intercepts them).
    Nmi,
    /// An SMI arrived while the guest ran (and the guest intercepts them).
    Smi,
    /// The guest touched an I/O port.
    Io {
        /// The port number.
        port: u16,
        /// `true` for OUT, `false` for IN.
        write: bool,
    },
    /// The guest executed RDMSR or WRMSR.
    Msr {
        /// `true` for WRMSR.
        write: bool,
    },
    /// The guest executed CPUID.
    Cpuid,
    /// An INIT signal arrived while the guest ran (and the guest intercepts it).
    Init,
    /// The guest executed RSM.
    Rsm,
    /// The guest executed INVD.
    Invd,
    /// The guest executed an instruction of the virtualization extension itself (on SVM:
    /// VMRUN, VMLOAD, VMSAVE, STGI, CLGI, SKINIT), carried as its raw exit code.
    Virtualization {
        /// The raw exit code.
        code: u64,
    },
    /// The processor refused to enter the guest: its state failed the consistency checks
    /// (VMEXIT_INVALID on SVM, APM §15.5.1).
    Invalid,
    /// Any other exit, with the architecture's raw code and information.
    Other {
        /// The raw exit code.
        code: u64,
        /// First word of exit information.
        info1: u64,
        /// Second word of exit information.
        info2: u64,
    },
}

impl fmt::Display for VmExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VmExit::Hypercall => write!(f, "hypercall"),
            VmExit::Halt => write!(f, "hlt"),
            VmExit::NestedPageFault { gpa, error } => {
                write!(f, "nested page fault at guest-physical {gpa:#x} (error {error:#x})")
            }
            VmExit::Shutdown => write!(f, "shutdown (triple fault)"),
            VmExit::Nmi => write!(f, "NMI"),
            VmExit::Smi => write!(f, "SMI"),
            VmExit::Io { port, write } => {
                write!(f, "port {} {port:#x}", if write { "write to" } else { "read from" })
            }
            VmExit::Msr { write } => write!(f, "{}", if write { "wrmsr" } else { "rdmsr" }),
            VmExit::Cpuid => write!(f, "cpuid"),
            VmExit::Init => write!(f, "INIT"),
            VmExit::Rsm => write!(f, "rsm"),
            VmExit::Invd => write!(f, "invd"),
            VmExit::Virtualization { code } => write!(f, "virtualization instruction {code:#x}"),
            VmExit::Invalid => write!(f, "invalid guest state (the CPU refused to enter)"),
            VmExit::Other { code, info1, info2 } => {
                write!(f, "unhandled exit {code:#x} (info {info1:#x}, {info2:#x})")
            }
        }
    }
}

/// A virtual CPU of some architecture, as the exit loop sees it.
pub trait Vcpu {
    /// Runs the guest until its next exit.
    fn run(&mut self) -> VmExit;
    /// The guest's general-purpose registers, as of the last exit; changes take effect at the
    /// next [`Vcpu::run`].
    fn registers(&mut self) -> &mut GuestRegisters;
    /// Moves the guest's instruction pointer past the hypercall instruction that caused the
    /// last exit.
    fn skip_hypercall(&mut self);
    /// Takes the NMI that made the last exit (it is still pending) and holds it for whoever
    /// owns the machine's NMIs, so that the guest can run again without meeting it.
    fn hold_nmi(&mut self);
    /// Lets the SMI that made the last exit (it is still pending) be taken outside the guest,
    /// by the firmware's SMM code, so that it runs in none of the guest's context and the
    /// guest can run again without meeting it.
    fn take_smi(&mut self);
    /// Moves the guest's instruction pointer `len` bytes on (past an instruction the
    /// hypervisor answered for it).
    fn skip(&mut self, len: u64);
    /// Makes the next run deliver the event `event` to the guest (on SVM an EVENTINJ value,
    /// APM §15.20), such as a #GP.
    fn inject(&mut self, event: u64);
    /// The guest's instruction pointer.
    fn rip(&mut self) -> u64;
    /// The guest's EFER.
    fn efer(&mut self) -> u64;
    /// Sets the guest's EFER (a checked value: see `svm::guest_os::msr_access`).
    fn set_efer(&mut self, value: u64);
}

/// What an [`ExitPolicy`] decided about one exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run the guest again.
    Resume,
    /// Stop running it.
    Stop(Outcome),
}

/// What each exit of a guest means: the policy of one kind of guest. It answers the exit
/// through the vCPU (registers, instruction pointer, injected events) and says whether the
/// guest goes on.
pub trait ExitPolicy<V: Vcpu + ?Sized> {
    /// Answers `exit`.
    fn exit(&mut self, vcpu: &mut V, exit: VmExit) -> Step;
}

/// What a hypercall handler decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypercallAction {
    /// Return to the guest after the hypercall instruction.
    Resume,
    /// The guest is done: stop running it (it completed its work).
    Finish,
    /// The call is not allowed: kill the guest.
    Refuse,
}

/// Handles a guest's hypercalls. The function number and arguments are in the registers; the
/// handler writes results there.
pub trait Hypercalls {
    /// Handles one hypercall.
    fn hypercall(&mut self, registers: &mut GuestRegisters) -> HypercallAction;
}

impl<F: FnMut(&mut GuestRegisters) -> HypercallAction> Hypercalls for F {
    fn hypercall(&mut self, registers: &mut GuestRegisters) -> HypercallAction {
        self(registers)
    }
}

/// Why a guest was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// It exited for a reason the hypervisor does not handle.
    UnhandledExit(VmExit),
    /// Its hypercall was refused; `number` is the function number it passed (RAX).
    RefusedHypercall {
        /// The function number.
        number: u64,
    },
}

impl fmt::Display for KillReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KillReason::UnhandledExit(exit) => write!(f, "{exit}"),
            KillReason::RefusedHypercall { number } => write!(f, "refused hypercall {number:#x}"),
        }
    }
}

/// How a guest's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A hypercall handler said the guest is done.
    Finished,
    /// The guest halted.
    Halted,
    /// The guest was killed.
    Killed(KillReason),
}

/// The NMIs (and, apart, the SMIs) one run may be interrupted by before it is killed (an NMI
/// exit the next one): far more than a machine's own sources give in a run (`linux-test`
/// injects about 130 NMIs a run).
pub const MAX_NMIS_PER_RUN: u32 = 100_000;

/// Runs `vcpu` until `policy` stops it: the hypervisor's one exit loop.
pub fn run<V: Vcpu + ?Sized, P: ExitPolicy<V> + ?Sized>(vcpu: &mut V, policy: &mut P) -> Outcome {
    loop {
        let exit = vcpu.run();
        if let Step::Stop(outcome) = policy.exit(vcpu, exit) {
            return outcome;
        }
    }
}

/// The policy of a guest that only makes hypercalls (a PAL, a test guest): hypercalls go to
/// the handler, HLT ends the run, an NMI is held and an SMI let in outside the guest (each up
/// to [`MAX_NMIS_PER_RUN`]: a storm of them would keep the run from ever ending), and every
/// other exit — nested page faults, port and MSR accesses, CPUID, shutdowns, invalid state,
/// exits no one expected — kills the guest. It never panics on a guest's behalf.
#[derive(Debug)]
pub struct Isolated<'a, H: ?Sized> {
    calls: &'a mut H,
    nmis: u32,
    smis: u32,
}

impl<'a, H: Hypercalls + ?Sized> Isolated<'a, H> {
    /// The policy, giving hypercalls to `calls`.
    pub fn new(calls: &'a mut H) -> Self {
        Isolated { calls, nmis: 0, smis: 0 }
    }
}

impl<V: Vcpu + ?Sized, H: Hypercalls + ?Sized> ExitPolicy<V> for Isolated<'_, H> {
    fn exit(&mut self, vcpu: &mut V, exit: VmExit) -> Step {
        match exit {
            VmExit::Hypercall => match self.calls.hypercall(vcpu.registers()) {
                HypercallAction::Resume => {
                    vcpu.skip_hypercall();
                    Step::Resume
                }
                HypercallAction::Finish => {
                    vcpu.skip_hypercall();
                    Step::Stop(Outcome::Finished)
                }
                HypercallAction::Refuse => {
                    let number = vcpu.registers().rax;
                    Step::Stop(Outcome::Killed(KillReason::RefusedHypercall { number }))
                }
            },
            VmExit::Halt => Step::Stop(Outcome::Halted),
            // An NMI is not the guest's: hold it and go on (a PAL has no IDT for it).
            VmExit::Nmi if self.nmis < MAX_NMIS_PER_RUN => {
                self.nmis += 1;
                vcpu.hold_nmi();
                Step::Resume
            }
            // Nor is an SMI: the firmware takes it outside the guest (a PAL would otherwise
            // have SMM run in its context, its registers saved where the OS could read them).
            VmExit::Smi if self.smis < MAX_NMIS_PER_RUN => {
                self.smis += 1;
                vcpu.take_smi();
                Step::Resume
            }
            exit => Step::Stop(Outcome::Killed(KillReason::UnhandledExit(exit))),
        }
    }
}

/// Runs `vcpu` under the [`Isolated`] policy, giving its hypercalls to `calls`.
pub fn run_isolated<V: Vcpu + ?Sized, H: Hypercalls + ?Sized>(
    vcpu: &mut V,
    calls: &mut H,
) -> Outcome {
    run(vcpu, &mut Isolated::new(calls))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A vCPU that replays a script of exits, each with the RAX the guest "set".
    pub(crate) struct Scripted {
        pub(crate) exits: Vec<(VmExit, u64)>,
        pub(crate) registers: GuestRegisters,
        pub(crate) skips: usize,
        pub(crate) runs: usize,
        pub(crate) held_nmis: usize,
        pub(crate) taken_smis: usize,
        pub(crate) skipped: u64,
        pub(crate) injected: Vec<u64>,
        pub(crate) efer: u64,
    }

    impl Scripted {
        pub(crate) fn new(exits: &[(VmExit, u64)]) -> Self {
            let mut exits = exits.to_vec();
            exits.reverse();
            Scripted {
                exits,
                registers: GuestRegisters::default(),
                skips: 0,
                runs: 0,
                held_nmis: 0,
                taken_smis: 0,
                skipped: 0,
                injected: Vec::new(),
                efer: 0,
            }
        }
    }

    impl Vcpu for Scripted {
        fn run(&mut self) -> VmExit {
            self.runs += 1;
            let (exit, rax) = self.exits.pop().expect("the loop ran past the script");
            self.registers.rax = rax;
            exit
        }
        fn registers(&mut self) -> &mut GuestRegisters {
            &mut self.registers
        }
        fn skip_hypercall(&mut self) {
            self.skips += 1;
        }
        fn hold_nmi(&mut self) {
            self.held_nmis += 1;
        }
        fn take_smi(&mut self) {
            self.taken_smis += 1;
        }
        fn skip(&mut self, len: u64) {
            self.skipped += len;
        }
        fn inject(&mut self, event: u64) {
            self.injected.push(event);
        }
        fn rip(&mut self) -> u64 {
            0x1000 + self.skipped
        }
        fn efer(&mut self) -> u64 {
            self.efer
        }
        fn set_efer(&mut self, value: u64) {
            self.efer = value;
        }
    }

    #[test]
    fn an_smi_is_taken_outside_the_guest_and_the_guest_goes_on() {
        let finish = |r: &mut GuestRegisters| {
            if r.rax == 1 {
                HypercallAction::Finish
            } else {
                HypercallAction::Resume
            }
        };
        let mut vcpu = Scripted::new(&[
            (VmExit::Smi, 0),
            (VmExit::Nmi, 0),
            (VmExit::Smi, 0),
            (VmExit::Hypercall, 1),
        ]);
        assert_eq!(run_isolated(&mut vcpu, &mut { finish }), Outcome::Finished);
        assert_eq!((vcpu.taken_smis, vcpu.held_nmis, vcpu.runs), (2, 1, 4));
        // A storm of them kills the run.
        let storm = usize::try_from(MAX_NMIS_PER_RUN).unwrap() + 1;
        let mut vcpu = Scripted::new(&alloc::vec![(VmExit::Smi, 0); storm]);
        let outcome = run_isolated(&mut vcpu, &mut { finish });
        assert_eq!(outcome, Outcome::Killed(KillReason::UnhandledExit(VmExit::Smi)));
        assert_eq!(vcpu.taken_smis, storm - 1);
    }

    #[test]
    fn an_nmi_is_held_and_the_guest_goes_on() {
        let mut vcpu = Scripted::new(&[
            (VmExit::Nmi, 0),
            (VmExit::Hypercall, 5),
            (VmExit::Nmi, 0),
            (VmExit::Nmi, 0),
            (VmExit::Hypercall, 6),
        ]);
        let outcome = run_isolated(&mut vcpu, &mut |r: &mut GuestRegisters| {
            if r.rax == 6 {
                HypercallAction::Finish
            } else {
                HypercallAction::Resume
            }
        });
        assert_eq!(outcome, Outcome::Finished);
        assert_eq!((vcpu.held_nmis, vcpu.runs, vcpu.skips), (3, 5, 2));
    }

    #[test]
    fn an_endless_storm_of_nmis_ends_the_run() {
        let storm = usize::try_from(MAX_NMIS_PER_RUN).unwrap() + 1;
        let mut vcpu = Scripted::new(&alloc::vec![(VmExit::Nmi, 0); storm]);
        let outcome =
            run_isolated(&mut vcpu, &mut |_: &mut GuestRegisters| HypercallAction::Resume);
        assert_eq!(outcome, Outcome::Killed(KillReason::UnhandledExit(VmExit::Nmi)));
        assert_eq!(vcpu.held_nmis, storm - 1);
    }

    #[test]
    fn hypercalls_resume_until_halt() {
        let mut vcpu =
            Scripted::new(&[(VmExit::Hypercall, 42), (VmExit::Hypercall, 43), (VmExit::Halt, 0)]);
        let mut seen = Vec::new();
        let outcome = run_isolated(&mut vcpu, &mut |r: &mut GuestRegisters| {
            seen.push(r.rax);
            r.rbx = r.rax + 1;
            HypercallAction::Resume
        });
        assert_eq!(outcome, Outcome::Halted);
        assert_eq!(seen, [42, 43]);
        assert_eq!(vcpu.skips, 2);
        assert_eq!(vcpu.registers.rbx, 44);
    }

    #[test]
    fn finish_skips_the_call_and_stops() {
        let mut vcpu = Scripted::new(&[(VmExit::Hypercall, 1)]);
        let outcome =
            run_isolated(&mut vcpu, &mut |_: &mut GuestRegisters| HypercallAction::Finish);
        assert_eq!(outcome, Outcome::Finished);
        assert_eq!((vcpu.skips, vcpu.runs), (1, 1));
    }

    #[test]
    fn refused_hypercall_kills_with_its_number() {
        let mut vcpu = Scripted::new(&[(VmExit::Hypercall, 0xdead)]);
        let outcome =
            run_isolated(&mut vcpu, &mut |_: &mut GuestRegisters| HypercallAction::Refuse);
        assert_eq!(outcome, Outcome::Killed(KillReason::RefusedHypercall { number: 0xdead }));
        assert_eq!(vcpu.skips, 0);
    }

    #[test]
    fn every_other_exit_kills_the_guest() {
        let hostile = [
            VmExit::NestedPageFault { gpa: 0x10000, error: 1 << 32 },
            VmExit::Shutdown,
            VmExit::Io { port: 0xf4, write: true },
            VmExit::Msr { write: false },
            VmExit::Invalid,
            VmExit::Cpuid,
            VmExit::Init,
            VmExit::Rsm,
            VmExit::Invd,
            VmExit::Virtualization { code: 0x80 },
            VmExit::Virtualization { code: 0x86 },
            VmExit::Other { code: 0x87, info1: 0, info2: 0 },
        ];
        for exit in hostile {
            let mut vcpu = Scripted::new(&[(VmExit::Hypercall, 7), (exit, 0)]);
            let outcome =
                run_isolated(&mut vcpu, &mut |_: &mut GuestRegisters| HypercallAction::Resume);
            assert_eq!(outcome, Outcome::Killed(KillReason::UnhandledExit(exit)));
            assert_eq!(vcpu.runs, 2);
        }
    }

    #[test]
    fn reports_name_the_evidence() {
        let npf = VmExit::NestedPageFault { gpa: 0x10000, error: 0x1_0000_0004 };
        assert_eq!(
            alloc::format!("{}", KillReason::UnhandledExit(npf)),
            "nested page fault at guest-physical 0x10000 (error 0x100000004)"
        );
        let io = VmExit::Io { port: 0xf4, write: true };
        assert_eq!(alloc::format!("{io}"), "port write to 0xf4");
    }
}
