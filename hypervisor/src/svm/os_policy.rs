//! The Linux guest's exit policy: what each exit of the untrusted OS means (`vm::run` drives
//! it). The decisions are here, where host tests reach them; what touches the machine — the
//! ports, the PAL hypercalls, the interrupt controllers' registers, NMIs, power — is the
//! image's, behind [`OsMachine`].
//!
//! | exit | answer |
//! | --- | --- |
//! | port access | the machine's (`guest_os::PortFilter`, then the port or its emulation) |
//! | hypercall | the machine's PAL calls; then NMIs held while a PAL ran are sent to the guest |
//! | CPUID | the processor's values through `guest_os::cpuid` |
//! | RDMSR, WRMSR | `guest_os::msr_access`: the value, EFER kept in the VMCB, or #GP |
//! | write to an interrupt controller's page | the machine checks and forwards it |
//! | any other nested page fault | #GP |
//! | SMI | taken outside the guest (the firmware's SMM code runs in none of its context) |
//! | RSM, a virtualization instruction | #UD |
//! | INVD | skipped (the caches keep what they hold, as after a WBINVD) |
//! | INIT | the machine turns itself off (every path to one is refused: one that came anyway would restart the processor outside guest mode) |
//! | shutdown, anything else | the guest stops |

use alloc::string::String;
use alloc::vec::Vec;

use super::guest_os::{self, MsrAction};
use crate::apic::{IO_APIC, LOCAL_APIC};
use crate::memory::{Range, PAGE_SIZE};
use crate::vm::{ExitPolicy, KillReason, Outcome, Step, Vcpu, VmExit};

/// CPUID, RDMSR, WRMSR and INVD are two bytes long (0F A2, 0F 32, 0F 30, 0F 08).
pub const TWO_BYTE_INSTRUCTION: u64 = 2;
/// The HPET's registers: read-only to the guest (Linux runs with `hpet=disable`; its HPET
/// character driver still reads them), every write dropped. QEMU's HPET lets a timer deliver
/// by FSB (configuration bit 14, even unadvertised): when it fires, it writes a guest-chosen
/// value to a guest-chosen physical address, past the nested page table and any IOMMU.
pub const HPET_PAGE: Range = Range::new(0xFED0_0000, 0xFED0_1000);
/// The interrupt controllers' register pages, mapped read-only in the guest's nested page
/// table: its writes exit.
pub const CONTROLLERS: [Range; 3] = [
    Range::new(LOCAL_APIC, LOCAL_APIC + PAGE_SIZE),
    Range::new(IO_APIC, IO_APIC + PAGE_SIZE),
    HPET_PAGE,
];
/// Nested page fault error code: the page was present, the access a write, and the fault
/// came from the access itself, not from a walk of the guest's page tables (APM §15.25.6).
const NPF_PRESENT: u64 = 1 << 0;
const NPF_WRITE: u64 = 1 << 1;
const NPF_FINAL_ADDRESS: u64 = 1 << 32;
const NPF_CONTROLLER_WRITE: u64 = NPF_PRESENT | NPF_WRITE | NPF_FINAL_ADDRESS;

/// Nested page faults reported ([`Event::Fault`]) before the rest go unreported.
pub const LOGGED_FAULTS: u64 = 16;
/// Refused MSR accesses reported, each MSR and kind once.
pub const LOGGED_MSRS: usize = 64;
/// Refused interrupt-controller writes reported.
pub const LOGGED_CONTROLLER_WRITES: u64 = 16;

/// What the machine does for the policy: everything that touches hardware.
pub trait OsMachine<V: Vcpu + ?Sized> {
    /// Answers an access to `port` (the instruction is in the VMCB's exit information).
    fn port(&mut self, vcpu: &mut V, port: u16, write: bool);
    /// Answers a hypercall (the PAL calls; results in the registers). The policy moves the
    /// instruction pointer on.
    fn hypercall(&mut self, vcpu: &mut V);
    /// The NMIs that came while a PAL ran and were held, since the last call.
    fn take_held_nmis(&mut self) -> u64;
    /// Sends this processor an NMI, which reaches the guest when it runs again.
    fn send_nmi(&mut self);
    /// The processor's CPUID of `leaf` and `subleaf`: EAX, EBX, ECX, EDX.
    fn host_cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// Checks and forwards the guest's write to the interrupt controller's page at `gpa`;
    /// why it was refused otherwise.
    fn controller_write(&mut self, vcpu: &mut V, gpa: u64) -> Result<(), String>;
    /// Turns the machine off.
    fn power_off(&mut self) -> !;
    /// Something the policy reports (a bounded number of each kind).
    fn note(&mut self, event: Event);
}

/// What the policy reports to the machine's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An MSR access refused with #GP (each MSR and kind once, at most [`LOGGED_MSRS`]).
    RefusedMsr {
        /// The MSR.
        msr: u32,
        /// WRMSR (else RDMSR).
        write: bool,
        /// Where.
        rip: u64,
    },
    /// A nested page fault answered with #GP (the first [`LOGGED_FAULTS`]).
    Fault {
        /// The guest-physical address.
        gpa: u64,
        /// The fault's error code.
        error: u64,
        /// Where.
        rip: u64,
    },
    /// An interrupt-controller write refused (the first [`LOGGED_CONTROLLER_WRITES`]).
    RefusedControllerWrite {
        /// Why.
        why: String,
        /// The instruction pointer after it.
        rip: u64,
    },
    /// The first SMI that came while the guest ran.
    Smi {
        /// Where.
        rip: u64,
    },
    /// The first NMIs held while a PAL ran, sent to the guest after the call.
    HeldNmis,
    /// An INIT reached the guest: the machine turns itself off.
    Init {
        /// Where.
        rip: u64,
    },
}

/// How many exits of each kind the policy answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// CPUID.
    pub cpuid: u64,
    /// RDMSR and WRMSR.
    pub msr: u64,
    /// Hypercalls.
    pub hypercalls: u64,
    /// Port accesses outside the guest's ports.
    pub refused_ports: u64,
    /// Virtualization instructions and RSM, answered with #UD.
    pub invalid_opcodes: u64,
    /// Nested page faults answered with #GP.
    pub faults: u64,
    /// Refused interrupt-controller writes.
    pub refused_controller_writes: u64,
    /// NMIs held while a PAL ran, then sent to the guest.
    pub held_nmis: u64,
    /// SMIs taken outside the guest.
    pub smis: u64,
}

/// The policy of the Linux guest, over `machine`.
#[derive(Debug)]
pub struct OsPolicy<M> {
    /// The machine.
    pub machine: M,
    /// What it answered so far.
    pub counts: Counts,
    /// The refused MSR accesses reported so far.
    reported_msrs: Vec<(u32, bool)>,
}

impl<M> OsPolicy<M> {
    /// The policy over `machine`, nothing answered yet.
    pub fn new(machine: M) -> Self {
        OsPolicy { machine, counts: Counts::default(), reported_msrs: Vec::new() }
    }
}

impl<V: Vcpu + ?Sized, M: OsMachine<V>> ExitPolicy<V> for OsPolicy<M> {
    fn exit(&mut self, vcpu: &mut V, exit: VmExit) -> Step {
        let counts = &mut self.counts;
        match exit {
            VmExit::Io { port, write } => {
                counts.refused_ports += u64::from(!guest_os::filtered(port));
                self.machine.port(vcpu, port, write);
            }
            VmExit::Hypercall => {
                counts.hypercalls += 1;
                self.machine.hypercall(vcpu);
                vcpu.skip_hypercall();
                // NMIs that came while a PAL ran are the guest's: one is due (they do not
                // queue), as if it had arrived now.
                let held = self.machine.take_held_nmis();
                if held > 0 {
                    if counts.held_nmis == 0 {
                        self.machine.note(Event::HeldNmis);
                    }
                    counts.held_nmis += held;
                    self.machine.send_nmi();
                }
            }
            VmExit::Cpuid => {
                counts.cpuid += 1;
                let r = vcpu.registers();
                let (leaf, subleaf) = (low32(r.rax), low32(r.rcx));
                let host = self.machine.host_cpuid(leaf, subleaf);
                let [a, b, c, d] = guest_os::cpuid(leaf, host);
                let r = vcpu.registers();
                (r.rax, r.rbx, r.rcx, r.rdx) = (a.into(), b.into(), c.into(), d.into());
                vcpu.skip(TWO_BYTE_INSTRUCTION);
            }
            VmExit::Msr { write } => {
                counts.msr += 1;
                let r = vcpu.registers();
                let msr = low32(r.rcx);
                let value = (r.rdx << 32) | (r.rax & 0xFFFF_FFFF);
                let efer = vcpu.efer();
                match guest_os::msr_access(msr, write.then_some(value), efer) {
                    MsrAction::Write(value) => {
                        vcpu.set_efer(value);
                        vcpu.skip(TWO_BYTE_INSTRUCTION);
                    }
                    MsrAction::Read(value) => {
                        let r = vcpu.registers();
                        (r.rax, r.rdx) = (value & 0xFFFF_FFFF, value >> 32);
                        vcpu.skip(TWO_BYTE_INSTRUCTION);
                    }
                    MsrAction::Fault => {
                        if self.reported_msrs.len() < LOGGED_MSRS
                            && !self.reported_msrs.contains(&(msr, write))
                        {
                            self.reported_msrs.push((msr, write));
                            let rip = vcpu.rip();
                            self.machine.note(Event::RefusedMsr { msr, write, rip });
                        }
                        vcpu.inject(guest_os::general_protection());
                    }
                }
            }
            VmExit::NestedPageFault { gpa, error }
                if error & NPF_CONTROLLER_WRITE == NPF_CONTROLLER_WRITE
                    && CONTROLLERS.iter().any(|c| c.contains(gpa)) =>
            {
                if let Err(why) = self.machine.controller_write(vcpu, gpa) {
                    counts.refused_controller_writes += 1;
                    if counts.refused_controller_writes <= LOGGED_CONTROLLER_WRITES {
                        let rip = vcpu.rip();
                        self.machine.note(Event::RefusedControllerWrite { why, rip });
                    }
                }
            }
            VmExit::NestedPageFault { gpa, error } => {
                counts.faults += 1;
                if counts.faults <= LOGGED_FAULTS {
                    let rip = vcpu.rip();
                    self.machine.note(Event::Fault { gpa, error, rip });
                }
                vcpu.inject(guest_os::general_protection());
            }
            VmExit::Smi => {
                // Taken in guest mode, the firmware's SMM code would run in the guest's
                // context (QEMU enters SMM without leaving it) and leave the processor in SMM
                // with the guest's registers in SMRAM: let the firmware take it here instead.
                counts.smis += 1;
                if counts.smis == 1 {
                    let rip = vcpu.rip();
                    self.machine.note(Event::Smi { rip });
                }
                vcpu.take_smi();
            }
            // No guest is ever in SMM, and none runs guests of its own.
            VmExit::Rsm | VmExit::Virtualization { .. } => {
                counts.invalid_opcodes += 1;
                vcpu.inject(guest_os::invalid_opcode());
            }
            VmExit::Invd => vcpu.skip(TWO_BYTE_INSTRUCTION),
            VmExit::Init => {
                let rip = vcpu.rip();
                self.machine.note(Event::Init { rip });
                self.machine.power_off();
            }
            other => return Step::Stop(Outcome::Killed(KillReason::UnhandledExit(other))),
        }
        Step::Resume
    }
}

/// The low 32 bits of a register.
const fn low32(value: u64) -> u32 {
    (value & 0xFFFF_FFFF) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::tests::Scripted;
    use alloc::vec;

    /// A machine that records what it was asked.
    #[derive(Default)]
    struct Recorder {
        ports: Vec<(u16, bool)>,
        hypercalls: usize,
        held: u64,
        nmis_sent: usize,
        controller_writes: Vec<u64>,
        refuse_controller: bool,
        notes: Vec<Event>,
    }

    impl OsMachine<Scripted> for Recorder {
        fn port(&mut self, _: &mut Scripted, port: u16, write: bool) {
            self.ports.push((port, write));
        }
        fn hypercall(&mut self, _: &mut Scripted) {
            self.hypercalls += 1;
        }
        fn take_held_nmis(&mut self) -> u64 {
            core::mem::take(&mut self.held)
        }
        fn send_nmi(&mut self) {
            self.nmis_sent += 1;
        }
        fn host_cpuid(&mut self, leaf: u32, _: u32) -> [u32; 4] {
            [leaf, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF]
        }
        fn controller_write(&mut self, _: &mut Scripted, gpa: u64) -> Result<(), String> {
            self.controller_writes.push(gpa);
            if self.refuse_controller {
                Err(String::from("an INIT"))
            } else {
                Ok(())
            }
        }
        fn power_off(&mut self) -> ! {
            panic!("powered off")
        }
        fn note(&mut self, event: Event) {
            self.notes.push(event);
        }
    }

    /// Runs `exits` (then a shutdown) under the policy.
    fn run(exits: &[(VmExit, u64)], machine: Recorder) -> (Outcome, Scripted, OsPolicy<Recorder>) {
        let mut script = exits.to_vec();
        script.push((VmExit::Shutdown, 0));
        let mut vcpu = Scripted::new(&script);
        let mut policy = OsPolicy::new(machine);
        let outcome = crate::vm::run(&mut vcpu, &mut policy);
        (outcome, vcpu, policy)
    }

    const SHUT_DOWN: Outcome = Outcome::Killed(KillReason::UnhandledExit(VmExit::Shutdown));

    #[test]
    fn virtualization_instructions_and_rsm_get_invalid_opcode() {
        let exits: Vec<(VmExit, u64)> = [0x80, 0x82, 0x83, 0x84, 0x85, 0x86]
            .into_iter()
            .map(|code| (VmExit::Virtualization { code }, 0))
            .chain([(VmExit::Rsm, 0)])
            .collect();
        let (outcome, vcpu, policy) = run(&exits, Recorder::default());
        assert_eq!(outcome, SHUT_DOWN);
        assert_eq!(vcpu.injected, vec![guest_os::invalid_opcode(); 7]);
        assert_eq!(policy.counts.invalid_opcodes, 7);
        assert_eq!(vcpu.skipped, 0);
    }

    #[test]
    fn nested_page_faults_get_general_protection_and_controller_writes_go_to_the_machine() {
        let write = NPF_CONTROLLER_WRITE;
        let exits = [
            // A write to the I/O APIC's page: the machine's.
            (VmExit::NestedPageFault { gpa: IO_APIC + 0x10, error: write }, 0),
            // A read of it (not a write exit), and a write elsewhere: #GP.
            (VmExit::NestedPageFault { gpa: IO_APIC, error: NPF_PRESENT | NPF_FINAL_ADDRESS }, 0),
            (VmExit::NestedPageFault { gpa: 0x10_0000, error: write }, 0),
            // A write to the local APIC's page the machine refuses: reported, nothing injected.
            (VmExit::NestedPageFault { gpa: LOCAL_APIC + 0x300, error: write }, 0),
        ];
        let machine = Recorder { refuse_controller: true, ..Recorder::default() };
        let (outcome, vcpu, policy) = run(&exits, machine);
        assert_eq!(outcome, SHUT_DOWN);
        assert_eq!(policy.machine.controller_writes, vec![IO_APIC + 0x10, LOCAL_APIC + 0x300]);
        assert_eq!(vcpu.injected, vec![guest_os::general_protection(); 2]);
        assert_eq!(policy.counts.faults, 2);
        assert_eq!(policy.counts.refused_controller_writes, 2);
        let faults = policy.machine.notes.iter().filter(|n| matches!(n, Event::Fault { .. }));
        assert_eq!(faults.count(), 2);
    }

    #[test]
    fn faults_are_reported_a_bounded_number_of_times() {
        let fault = (VmExit::NestedPageFault { gpa: 0, error: 0 }, 0);
        let (_, vcpu, policy) = run(&vec![fault; 100], Recorder::default());
        assert_eq!(policy.counts.faults, 100);
        assert_eq!(vcpu.injected.len(), 100);
        assert_eq!(policy.machine.notes.len(), usize::try_from(LOGGED_FAULTS).unwrap());
    }

    #[test]
    fn cpuid_and_invd_are_answered_and_skipped() {
        // Leaf 1 (the guest's RAX): guest_os::cpuid of the host's values. (The scripted vCPU
        // sets RAX anew at every exit, so the check is on the other three.)
        let (_, mut vcpu, policy) = run(&[(VmExit::Cpuid, 1)], Recorder::default());
        let [_, b, c, d] = guest_os::cpuid(1, [1, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF]);
        let r = vcpu.registers();
        assert_eq!((r.rbx, r.rcx, r.rdx), (b.into(), c.into(), d.into()));
        assert_ne!(c, 0xFFFF_FFFF, "the filter hides some of leaf 1's ECX");
        assert_eq!((vcpu.skipped, policy.counts.cpuid), (TWO_BYTE_INSTRUCTION, 1));
        let (_, vcpu, _) = run(&[(VmExit::Invd, 0)], Recorder::default());
        assert_eq!(vcpu.skipped, TWO_BYTE_INSTRUCTION);
        assert!(vcpu.injected.is_empty());
    }

    #[test]
    fn a_refused_msr_gets_general_protection_and_is_reported_once() {
        // RCX = an MSR the guest may not write (VM_HSAVE_PA), twice.
        let mut vcpu = Scripted::new(&[
            (VmExit::Msr { write: true }, 0),
            (VmExit::Msr { write: true }, 0),
            (VmExit::Shutdown, 0),
        ]);
        vcpu.registers.rcx = 0xC001_0117;
        let mut policy = OsPolicy::new(Recorder::default());
        assert_eq!(crate::vm::run(&mut vcpu, &mut policy), SHUT_DOWN);
        assert_eq!(vcpu.injected, vec![guest_os::general_protection(); 2]);
        assert_eq!(
            policy.machine.notes,
            vec![Event::RefusedMsr { msr: 0xC001_0117, write: true, rip: 0x1000 }]
        );
        assert_eq!(vcpu.skipped, 0);
    }

    #[test]
    fn held_nmis_are_sent_to_the_guest_after_the_hypercall() {
        let machine = Recorder { held: 3, ..Recorder::default() };
        let (_, vcpu, policy) = run(&[(VmExit::Hypercall, 0), (VmExit::Hypercall, 0)], machine);
        assert_eq!(policy.machine.hypercalls, 2);
        assert_eq!(vcpu.skips, 2);
        assert_eq!((policy.machine.nmis_sent, policy.counts.held_nmis), (1, 3));
        assert_eq!(policy.machine.notes, vec![Event::HeldNmis]);
    }

    #[test]
    fn smis_are_taken_outside_the_guest_ports_go_to_the_machine() {
        let exits = [
            (VmExit::Smi, 0),
            (VmExit::Smi, 0),
            (VmExit::Io { port: 0x3F8, write: true }, 0),
            (VmExit::Io { port: 0xCF9, write: true }, 0),
        ];
        let (outcome, vcpu, policy) = run(&exits, Recorder::default());
        assert_eq!(outcome, SHUT_DOWN);
        assert_eq!(vcpu.taken_smis, 2);
        assert_eq!(policy.counts.smis, 2);
        assert_eq!(policy.machine.notes, vec![Event::Smi { rip: 0x1000 }]);
        assert_eq!(policy.machine.ports, vec![(0x3F8, true), (0xCF9, true)]);
        assert_eq!(
            policy.counts.refused_ports,
            u64::from(!guest_os::filtered(0x3F8)) + u64::from(!guest_os::filtered(0xCF9))
        );
    }

    #[test]
    #[should_panic(expected = "powered off")]
    fn an_init_turns_the_machine_off() {
        run(&[(VmExit::Init, 0)], Recorder::default());
    }

    #[test]
    fn other_exits_stop_the_guest() {
        for exit in [
            VmExit::Halt,
            VmExit::Invalid,
            VmExit::Nmi,
            VmExit::Other { code: 0x46, info1: 0, info2: 0 },
        ] {
            let mut vcpu = Scripted::new(&[(exit, 0)]);
            let mut policy = OsPolicy::new(Recorder::default());
            assert_eq!(
                crate::vm::run(&mut vcpu, &mut policy),
                Outcome::Killed(KillReason::UnhandledExit(exit))
            );
        }
    }
}
