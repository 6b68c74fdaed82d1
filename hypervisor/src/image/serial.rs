//! The 16550 UART on COM1 (I/O port 0x3F8) and the `log` facade over it. Lines look like
//! `[0][INFO][selftest] ...`: CPU, level, module.

use core::fmt::{self, Write};
use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;

/// Register offsets from the base port (16550 data sheet).
const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const FIFO_CONTROL: u16 = 2;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;
/// Line status bit 5: the transmit holding register is empty.
const TRANSMIT_EMPTY: u8 = 1 << 5;

/// One UART at a base port.
struct Uart {
    base: u16,
}

impl Uart {
    fn write_register(&self, offset: u16, value: u8) {
        // SAFETY: the UART's registers are I/O ports that no other code uses; writing them
        // touches no memory.
        unsafe { Port::<u8>::new(self.base + offset).write(value) }
    }

    fn read_register(&self, offset: u16) -> u8 {
        // SAFETY: as in `write_register`; reading line status has no side effect.
        unsafe { Port::<u8>::new(self.base + offset).read() }
    }

    /// 115200 baud, 8N1, FIFOs on, interrupts off.
    fn init(&self) {
        self.write_register(INTERRUPT_ENABLE, 0x00);
        self.write_register(LINE_CONTROL, 0x80); // divisor latch access
        self.write_register(DATA, 0x01); // divisor 1: 115200 baud
        self.write_register(INTERRUPT_ENABLE, 0x00);
        self.write_register(LINE_CONTROL, 0x03); // 8 bits, no parity, one stop bit
        self.write_register(FIFO_CONTROL, 0xC7); // enable and clear FIFOs
        self.write_register(MODEM_CONTROL, 0x03); // DTR, RTS
    }

    fn send(&self, byte: u8) {
        while self.read_register(LINE_STATUS) & TRANSMIT_EMPTY == 0 {
            core::hint::spin_loop();
        }
        self.write_register(DATA, byte);
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.send(b'\r');
            }
            self.send(byte);
        }
        Ok(())
    }
}

static PORT: Mutex<Uart> = Mutex::new(Uart { base: COM1 });

/// Writes one line, bypassing the logger. If the port is held (a panic while logging), writes
/// anyway: the report matters more than an interleaved line.
pub fn write_line(args: fmt::Arguments<'_>) {
    let write = |uart: &mut Uart| {
        let _ = uart.write_fmt(args);
        let _ = uart.write_str("\n");
    };
    match PORT.try_lock() {
        Some(mut uart) => write(&mut uart),
        None => write(&mut Uart { base: COM1 }),
    }
}

struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let target = record.target();
        let module = target.strip_prefix("vpr_hypervisor::").unwrap_or(target);
        let mut uart = PORT.lock();
        let _ = writeln!(uart, "[0][{}][{module}] {}", record.level(), record.args());
    }

    fn flush(&self) {}
}

static LOGGER: SerialLogger = SerialLogger;

/// Sets up the UART and routes `log` to it (all levels).
pub fn init() {
    PORT.lock().init();
    // Only fails if a logger is already set, which would be this one.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
}
