//! The boot self-test: SVM, the world switch, the exit dispatcher and the nested page tables,
//! exercised by test guests, several of them hostile. Each test logs `test <name>: ok` or
//! `test <name>: FAILED: <why>`; `hv_main` prints the totals as `N passed, M failed`.

mod manager;
mod pal;
mod sql;
mod tpm;

use crate::guest::{call, program, Options, TestGuest, CODE, PATTERNS};
use crate::mem;
use crate::svm::{self, Svm};
use crate::tcc::Tcc;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vpr_hypervisor::svm::vmcb::intercept;
use vpr_hypervisor::vm::{GuestRegisters, HypercallAction, KillReason, Outcome, VmExit};

type TestResult = Result<(), String>;

/// A named test that runs guests on `Svm`.
type Test = (&'static str, fn(&Svm, &Tcc) -> TestResult);

/// A guest from `program` with default options, or the reason it could not be built.
fn guest(svm: &Svm, program: &[u8]) -> Result<TestGuest, String> {
    TestGuest::new(svm, program, Options::default()).map_err(|e| format!("guest set-up: {e}"))
}

/// Fails unless `outcome` is the kill for `expected`; logs the kill report either way.
fn expect_killed(outcome: Outcome, expected: impl Fn(&VmExit) -> bool) -> TestResult {
    match outcome {
        Outcome::Killed(reason @ KillReason::UnhandledExit(exit)) if expected(&exit) => {
            log::info!("hv: guest killed: {reason}");
            Ok(())
        }
        other => Err(format!("expected the guest to be killed, got {other:?}")),
    }
}

/// Enters a guest and comes back at its first hypercall, then lets it halt.
fn vmrun_round_trip(svm: &Svm, _tcc: &Tcc) -> TestResult {
    let program = program::ping();
    let mut guest = guest(svm, program)?;
    let mut seen = Vec::new();
    let outcome = guest.run(&mut |r: &mut GuestRegisters| {
        seen.push(r.rax);
        HypercallAction::Resume
    });
    let rip = guest.vcpu.vmcb().save.rip;
    if outcome != Outcome::Halted || seen != [42, 43] {
        return Err(format!("outcome {outcome:?}, hypercall values {seen:?}"));
    }
    // HLT is intercepted before it executes: RIP is on it, the program's last byte. This also
    // checks that each VMMCALL was skipped by exactly its 3 bytes.
    let hlt = CODE + program.len() as u64 - 1;
    if rip != hlt {
        return Err(format!("guest stopped at {rip:#x}, expected the hlt at {hlt:#x}"));
    }
    Ok(())
}

/// The hypervisor's answer in RAX reaches the guest, which reports it back in RBX.
fn vmmcall_returns_value(svm: &Svm, _tcc: &Tcc) -> TestResult {
    const ANSWER: u64 = 0x1234_5678_9ABC_DEF0;
    let mut guest = guest(svm, program::echo())?;
    let mut reported = None;
    let outcome = guest.run(&mut |r: &mut GuestRegisters| match r.rax {
        call::ASK => {
            r.rax = ANSWER;
            HypercallAction::Resume
        }
        call::REPORT => {
            reported = Some(r.rbx);
            HypercallAction::Finish
        }
        _ => HypercallAction::Refuse,
    });
    if outcome != Outcome::Finished || reported != Some(ANSWER) {
        return Err(format!("outcome {outcome:?}, guest reported {reported:x?}"));
    }
    Ok(())
}

/// Every general-purpose register crosses the world switch both ways.
fn registers_survive_world_switch(svm: &Svm, _tcc: &Tcc) -> TestResult {
    let mut guest = guest(svm, program::registers())?;
    let mut mismatch = None;
    let outcome = guest.run(&mut |r: &mut GuestRegisters| match r.rax {
        call::CHECK => {
            let regs = [
                &mut r.rbx, &mut r.rcx, &mut r.rdx, &mut r.rsi, &mut r.rdi, &mut r.rbp, &mut r.r8,
                &mut r.r9, &mut r.r10, &mut r.r11, &mut r.r12, &mut r.r13, &mut r.r14, &mut r.r15,
            ];
            for (i, (reg, pattern)) in regs.into_iter().zip(PATTERNS).enumerate() {
                if *reg != pattern && mismatch.is_none() {
                    mismatch = Some((i, *reg));
                }
                *reg = !pattern;
            }
            HypercallAction::Resume
        }
        call::PASS => HypercallAction::Finish,
        _ => HypercallAction::Refuse,
    });
    if let Some((i, value)) = mismatch {
        return Err(format!("register #{i} arrived as {value:#x}"));
    }
    if outcome != Outcome::Finished {
        return Err(format!("the guest saw wrong registers after the switch: {outcome:?}"));
    }
    Ok(())
}

use crate::tsc::read as rdtsc;

/// Times VMRUN -> VMMCALL exit -> VMRUN with the TSC, over many round trips.
fn round_trip_cost(svm: &Svm, _tcc: &Tcc) -> TestResult {
    const ROUNDS: u64 = 1000;
    let mut guest = guest(svm, program::spin())?;
    let mut count = 0;
    let start = rdtsc();
    let outcome = guest.run(&mut |_: &mut GuestRegisters| {
        count += 1;
        if count == ROUNDS {
            HypercallAction::Finish
        } else {
            HypercallAction::Resume
        }
    });
    let ticks = rdtsc() - start;
    if outcome != Outcome::Finished {
        return Err(format!("outcome {outcome:?} after {count} round trips"));
    }
    log::info!("hv: vmrun round trip: {} TSC ticks (mean of {ROUNDS})", ticks / ROUNDS);
    Ok(())
}

/// A guest writing where the hypervisor lives in host memory faults, is killed, and the
/// hypervisor's bytes are untouched.
fn npf_kills_guest(svm: &Svm, _tcc: &Tcc) -> TestResult {
    let image = mem::image_range().start;
    let magic = || {
        // SAFETY: the image's first bytes (the multiboot header, in .multiboot) are mapped
        // and never written; reading 4 of them is sound.
        unsafe { core::ptr::read_volatile(mem::usize_of(image) as *const u32) }
    };
    let before = magic();
    let mut guest = guest(svm, program::poke_host())?;
    if guest.translate(0x10_0000).is_some() || guest.translate(CODE).is_none() {
        return Err(String::from("the nested page table maps more or less than the guest"));
    }
    let outcome = guest.run(&mut |_: &mut GuestRegisters| HypercallAction::Refuse);
    // EXITINFO1: bit 32 = fault on the final (guest-physical) access, bit 1 = write
    // (APM §15.25.6).
    expect_killed(outcome, |exit| {
        matches!(exit, VmExit::NestedPageFault { gpa: 0x10_0000, error }
            if error & (1 << 32) != 0 && error & 0x2 != 0)
    })?;
    if magic() != before {
        return Err(String::from("the hypervisor's image changed"));
    }
    Ok(())
}

/// An exit the dispatcher has no handler for kills the guest.
fn unknown_exit_kills_guest(svm: &Svm, _tcc: &Tcc) -> TestResult {
    let options = Options { extra_misc1: intercept::CPUID, ..Options::default() };
    let mut guest =
        TestGuest::new(svm, program::cpuid(), options).map_err(|e| format!("guest set-up: {e}"))?;
    let outcome = guest.run(&mut |_: &mut GuestRegisters| HypercallAction::Refuse);
    expect_killed(outcome, |exit| *exit == VmExit::Cpuid)
}

/// A guest cannot end QEMU through the debug-exit port: port I/O exits and kills it.
fn port_io_kills_guest(svm: &Svm, _tcc: &Tcc) -> TestResult {
    let mut guest = guest(svm, program::debug_exit())?;
    let outcome = guest.run(&mut |_: &mut GuestRegisters| HypercallAction::Refuse);
    expect_killed(outcome, |exit| *exit == VmExit::Io { port: 0xf4, write: true })
}

/// A guest cannot read the hypervisor's MSRs.
fn msr_access_kills_guest(svm: &Svm, _tcc: &Tcc) -> TestResult {
    let mut guest = guest(svm, program::rdmsr())?;
    let outcome = guest.run(&mut |_: &mut GuestRegisters| HypercallAction::Refuse);
    expect_killed(outcome, |exit| *exit == VmExit::Msr { write: false })
}

/// A guest's triple fault ends the guest, not the machine.
fn triple_fault_kills_guest(svm: &Svm, _tcc: &Tcc) -> TestResult {
    let mut guest = guest(svm, program::triple_fault())?;
    let outcome = guest.run(&mut |_: &mut GuestRegisters| HypercallAction::Refuse);
    expect_killed(outcome, |exit| *exit == VmExit::Shutdown)
}

/// VMRUN refuses a guest with ASID 0; the refusal (VMEXIT_INVALID) kills the guest.
fn invalid_state_kills_guest(svm: &Svm, _tcc: &Tcc) -> TestResult {
    let options = Options { asid: 0, ..Options::default() };
    let mut guest =
        TestGuest::new(svm, program::ping(), options).map_err(|e| format!("guest set-up: {e}"))?;
    let outcome = guest.run(&mut |_: &mut GuestRegisters| HypercallAction::Resume);
    log::info!("hv: raw exit code {:#x}", guest.vcpu.vmcb().control.exit_code);
    expect_killed(outcome, |exit| *exit == VmExit::Invalid)
}

/// After all that, a well-behaved guest still runs, and every frame came back.
fn hypervisor_survives(svm: &Svm, tcc: &Tcc, frames_before: u64) -> TestResult {
    vmrun_round_trip(svm, tcc)?;
    let frames = mem::available_frames();
    if frames != frames_before {
        return Err(format!("{frames} frames free, {frames_before} before the guests ran"));
    }
    Ok(())
}

struct Suite {
    passed: u32,
    failed: u32,
}

impl Suite {
    fn record(&mut self, name: &str, result: TestResult) {
        match result {
            Ok(()) => {
                self.passed += 1;
                log::info!("test {name}: ok");
            }
            Err(why) => {
                self.failed += 1;
                log::error!("test {name}: FAILED: {why}");
            }
        }
    }
}

/// SVM enabled on this processor, or why not.
fn enable_svm() -> Result<Svm, String> {
    match svm::enable() {
        Ok(svm) if svm::enabled() => Ok(svm),
        Ok(_) => Err(String::from("EFER.SVME did not stick")),
        Err(e) => Err(format!("{e}")),
    }
}

/// The tests of the second boot on the same TPM state: the TPM kept its identity (the EK
/// certificate, which `qemu-test` compares with the file again), its PCRs were reset by the
/// reboot, and the measured launch gives the same PCR 17 as before.
pub fn run_after_reboot(tcc: &Tcc) -> (u32, u32) {
    let mut suite = Suite { passed: 0, failed: 0 };
    let svm = match enable_svm() {
        Ok(svm) => svm,
        Err(why) => {
            suite.record("svm_available", Err(why));
            return (suite.passed, suite.failed);
        }
    };
    let tests: [Test; 10] = [
        ("tpm_measured_launch_after_reboot", tpm::tpm_measured_launch),
        ("tpm_pal_pcr_reset_by_reboot", tpm::tpm_pal_pcr_reset),
        ("tpm_ek_certificate_after_reboot", tpm::tpm_ek_certificate),
        // Registers PALs (which extends PCR 18): after the PCR 18 check.
        ("tpm_counters_after_reboot", tpm::tpm_counters_after_reboot),
        ("tpm_unseal_after_reboot", tpm::tpm_unseal_after_reboot),
        ("tpm_activate_credential", tpm::tpm_activate_credential),
        ("tpm_evidence", tpm::tpm_evidence),
        ("tpm_manager_after_reboot", manager::tpm_manager_after_reboot),
        ("certified_tcc_key", pal::certified_tcc_key),
        // Changes PCR 17 for good: last.
        ("tpm_master_secret_needs_pcr17", tpm::tpm_master_secret_needs_pcr17),
    ];
    for (name, test) in tests {
        suite.record(name, test(&svm, tcc));
    }
    (suite.passed, suite.failed)
}

/// Runs every test; returns (passed, failed).
pub fn run(tcc: &Tcc) -> (u32, u32) {
    let mut suite = Suite { passed: 0, failed: 0 };
    let svm = match enable_svm() {
        Ok(svm) => svm,
        Err(why) => {
            suite.record("svm_available", Err(why));
            return (suite.passed, suite.failed);
        }
    };
    log::info!(
        "hv: svm enabled ({} ASIDs, nested paging, nRIP save {})",
        svm.asids,
        if svm.nrip_save { "yes" } else { "no" }
    );
    suite.record("svm_available", Ok(()));

    let frames_before = mem::available_frames();
    let tests: [Test; 46] = [
        ("vmrun_round_trip", vmrun_round_trip),
        ("vmmcall_returns_value", vmmcall_returns_value),
        ("registers_survive_world_switch", registers_survive_world_switch),
        ("round_trip_cost", round_trip_cost),
        ("npf_on_unmapped_page_kills_guest", npf_kills_guest),
        ("unknown_exit_kills_guest", unknown_exit_kills_guest),
        ("port_io_kills_guest", port_io_kills_guest),
        ("msr_access_kills_guest", msr_access_kills_guest),
        ("triple_fault_kills_guest", triple_fault_kills_guest),
        ("invalid_state_kills_guest", invalid_state_kills_guest),
        ("sha256_known_answer", pal::sha256_known_answer),
        ("tpm_measured_launch", tpm::tpm_measured_launch),
        ("tpm_refuses_launch_pcr_from_locality_0", tpm::tpm_refuses_launch_pcr_from_locality_0),
        ("tpm_random_and_pcr_extend", tpm::tpm_random_and_pcr_extend),
        ("tpm_measures_registered_pals", tpm::tpm_measures_registered_pals),
        ("tpm_ek_certificate", tpm::tpm_ek_certificate),
        ("tpm_counters", tpm::tpm_counters),
        ("tpm_counter_pages_refuse_the_owner", tpm::tpm_counter_pages_refuse_the_owner),
        ("tpm_seal_for_next_boot", tpm::tpm_seal_for_next_boot),
        ("pal_upcrs", pal::pal_upcrs),
        ("tpm_quote", tpm::tpm_quote),
        ("tpm_tcc_key_bound", tpm::tpm_tcc_key_bound),
        ("tpm_endorsement_and_attestation_keys", tpm::tpm_endorsement_and_attestation_keys),
        ("tpm_manager_for_next_boot", manager::tpm_manager_for_next_boot),
        ("tpm_cost", tpm::tpm_cost),
        ("hypercall_version", pal::hypercall_version),
        ("pal_lifecycle", pal::pal_lifecycle),
        ("pal_memory_unreachable_from_guest", pal::pal_memory_unreachable),
        ("guest_cannot_read_hypervisor", pal::guest_cannot_read_hypervisor),
        ("hostile_hypercalls_refused", pal::hostile_hypercalls),
        ("hostile_pal_is_killed", pal::hostile_pal_is_killed),
        ("pal_reentrancy_refused", pal::pal_reentrancy_refused),
        ("bad_pal_images_refused", pal::bad_images_refused),
        ("pal_services", pal::pal_services),
        ("vector_state_isolated", pal::vector_state_isolated),
        ("pal_seal_and_attest", pal::pal_seal_and_attest),
        ("pal_service_abuse_refused", pal::pal_service_abuse_refused),
        ("sql_pal_registers", sql::sql_pal_registers),
        ("sql_pal_statements", sql::sql_pal_statements),
        ("sql_pal_replicates", sql::sql_pal_replicates),
        ("sql_pal_bad_input", sql::sql_pal_bad_input),
        ("sql_pal_huge_results", sql::sql_pal_huge_results),
        ("sql_pal_cost", sql::sql_pal_cost),
        ("production_pal_serves_the_manager_only", sql::production_pal_serves_the_manager_only),
        ("manager_group_under_the_hypervisor", manager::manager_group_under_the_hypervisor),
        ("pal_cost", pal::pal_cost),
    ];
    for (name, test) in tests {
        suite.record(name, test(&svm, tcc));
    }
    suite.record("hypervisor_survives", hypervisor_survives(&svm, tcc, frames_before));
    (suite.passed, suite.failed)
}
