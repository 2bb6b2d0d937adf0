//! Procurator's own minimal PVH guests, for testing the cloud-hypervisor driver against the
//! real VMM on hosts where a Linux guest cannot boot under KVM (nested PVM runs only small
//! PVH guests).
//!
//! Built with binutils only (`as`, `ld`) into a temporary folder, once per test process. Every
//! guest is entered through the Xen PVH ELF note (32-bit protected mode, paging off), prints
//! on the 16550 at 0x3f8 a greeting, the kernel command line and [`BOOT_LINE`] (which carries
//! the worker's boot marker, ` as init process`), then, by [`Mode`]:
//!
//! - [`Mode::PowerOff`]: ACPI S5 through cloud-hypervisor's sleep-control port 0x600 at once;
//! - [`Mode::Halt`]: halts forever and ignores the power button (the driver's fallback path);
//! - [`Mode::Button`]: switches to long mode, maps the local APIC and cloud-hypervisor's ACPI
//!   GED notification register, runs the APIC timer at 50 Hz and powers off (S5) once the GED
//!   shows a power-button press — what a Linux guest with ACPI does;
//! - [`Mode::TripleFault`]: an empty IDT and a breakpoint: the CPU resets, and cloud-hypervisor
//!   reboots the guest instead of exiting.
//!
//! The GED's guest-physical address: cloud-hypervisor (v54) hands out its ACPI registers from
//! the top of the guest-physical space downwards — device manager, CPU manager, then GED at
//! `2^bits - 0x13000`, where `bits` is the host's physical address width capped by
//! `cpus.max_phys_bits` (46 unless configured). A guest that finds no device there says so on
//! its console.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Printed by every guest once it runs; contains the worker's boot marker.
pub const BOOT_LINE: &str = "procurator-pvh: Run /init as init process";
/// Printed by [`Mode::Button`] when it saw the power button.
pub const BUTTON_LINE: &str = "procurator-pvh: power button, powering off";
/// Printed by [`Mode::Button`] once its timer runs and it waits for the button.
pub const WAITING_LINE: &str = "procurator-pvh: waiting for the power button";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    PowerOff,
    Halt,
    Button,
    TripleFault,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::PowerOff, Mode::Halt, Mode::Button, Mode::TripleFault];

    fn number(self) -> u32 {
        match self {
            Mode::PowerOff => 1,
            Mode::Halt => 2,
            Mode::Button => 3,
            Mode::TripleFault => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::PowerOff => "poweroff",
            Mode::Halt => "halt",
            Mode::Button => "button",
            Mode::TripleFault => "triple-fault",
        }
    }
}

const LINKER_SCRIPT: &str = r#"ENTRY(entry32)
PHDRS { image PT_LOAD FLAGS(7); xen PT_NOTE; }
SECTIONS {
  . = 0x100000;
  .text : { *(.text) } :image
  .rodata : { *(.rodata) } :image
  .notes : { *(.note.Xen) } :image :xen
  .data : { *(.data) } :image
  .bss : { *(.bss) } :image
}
"#;

const SOURCE: &str = r#"
/* Procurator's PVH test guest; MODE and GED come from the assembler command line. */
        .set COM1, 0x3f8
        .set ACPI_SLEEP_CONTROL, 0x600
        .set S5_AND_ENABLE, 0x34
        .set LAPIC, 0xfee00000
        .set GED_POWER_BUTTON, 0x08

        .section .note.Xen, "a"
        .balign 4
        .long 4                 /* name size: "Xen\0" */
        .long 4                 /* descriptor size */
        .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long entry32

        .text
        .code32
        .globl entry32
entry32:
        cli
        mov     $boot_stack, %esp
        mov     %ebx, %ebp              /* physical address of hvm_start_info */
        mov     $greeting, %esi
        call    print32
        mov     24(%ebp), %esi          /* cmdline_paddr, low half */
        test    %esi, %esi
        jz      no_cmdline
        call    print32
no_cmdline:
        mov     $booted, %esi
        call    print32
.if MODE == 1
        jmp     power_off32
.elseif MODE == 3
        jmp     enter_long_mode
.elseif MODE == 4
        lidt    empty_idt
        int3                            /* no IDT: #BP -> #DF -> triple fault -> reset */
.endif
stop32:
        cli
        hlt
        jmp     stop32

power_off32:
        mov     $ACPI_SLEEP_CONTROL, %dx
        mov     $S5_AND_ENABLE, %al
        outb    %al, %dx
        jmp     stop32

/* %esi: NUL-terminated string to COM1. The same bytes run in 64-bit mode. */
print32:
        push    %eax
        push    %edx
        mov     $COM1, %dx
print_next:
        lodsb
        test    %al, %al
        jz      print_done
        outb    %al, %dx
        jmp     print_next
print_done:
        pop     %edx
        pop     %eax
        ret

.if MODE == 3
/* 4-level paging with 2 MiB pages: identity maps the first 2 MiB, the local APIC's page and
 * the GED's page (both uncached), all from static tables below. */
enter_long_mode:
        mov     %cr4, %eax
        or      $(1 << 5), %eax         /* PAE */
        mov     %eax, %cr4
        mov     $pml4, %eax
        mov     %eax, %cr3
        mov     $0xc0000080, %ecx       /* EFER */
        rdmsr
        or      $(1 << 8), %eax         /* LME */
        wrmsr
        mov     %cr0, %eax
        or      $(1 << 31), %eax        /* PG */
        mov     %eax, %cr0
        lgdt    gdt_pointer
        ljmp    $0x08, $long_mode

        .code64
long_mode:
        mov     $0x10, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        mov     $boot_stack, %esp
        call    fill_idt
        lidt    idt_pointer
        /* An MMIO read nobody handles answers all ones: the GED is not where we think. */
        movabs  GED, %al
        cmp     $0xff, %al
        jne     ged_found
        mov     $no_ged, %esi
        call    print32
        jmp     stop64
ged_found:
        mov     $LAPIC, %ebx
        movl    $0x1ff, 0xf0(%rbx)      /* spurious vector 0xff, APIC software-enabled */
        movl    $0x3, 0x3e0(%rbx)       /* timer divides by 16 */
        movl    $0x20020, 0x320(%rbx)   /* periodic, vector 0x20 */
        movl    $1250000, 0x380(%rbx)   /* 20 ms at a 1 GHz APIC bus / 16 */
        mov     $waiting, %esi
        call    print32
wait_button:
        sti
        hlt
        cli
        movabs  GED, %al                /* reading clears the notification */
        test    $GED_POWER_BUTTON, %al
        jz      wait_button
        mov     $button, %esi
        call    print32
        mov     $ACPI_SLEEP_CONTROL, %dx
        mov     $S5_AND_ENABLE, %al
        outb    %al, %dx
stop64:
        cli
        hlt
        jmp     stop64

/* 256 interrupt gates: exceptions (0-31) to `exception`, everything else to `timer`. */
fill_idt:
        lea     idt(%rip), %rdi
        xor     %ecx, %ecx
next_gate:
        lea     timer(%rip), %rax
        cmp     $32, %ecx
        jae     have_handler
        lea     exception(%rip), %rax
have_handler:
        mov     %ax, (%rdi)             /* offset 15:0 */
        movw    $0x08, 2(%rdi)          /* code selector */
        movw    $0x8e00, 4(%rdi)        /* present, DPL 0, 64-bit interrupt gate */
        shr     $16, %rax
        mov     %ax, 6(%rdi)            /* offset 31:16 */
        movl    $0, 8(%rdi)             /* offset 63:32 */
        movl    $0, 12(%rdi)
        add     $16, %rdi
        inc     %ecx
        cmp     $256, %ecx
        jb      next_gate
        ret

timer:
        push    %rax
        mov     $LAPIC, %eax
        movl    $0, 0xb0(%rax)          /* end of interrupt */
        pop     %rax
        iretq

exception:
        mov     $fault, %esi
        call    print32
        jmp     stop64
.endif

        .section .rodata
greeting:       .asciz "procurator-pvh: entered through the PVH note; command line: "
booted:         .asciz "\nprocurator-pvh: Run /init as init process\n"
waiting:        .asciz "procurator-pvh: waiting for the power button\n"
button:         .asciz "procurator-pvh: power button, powering off\n"
no_ged:         .asciz "procurator-pvh: no ACPI GED register at the expected address\n"
fault:          .asciz "procurator-pvh: CPU exception\n"

        .data
        .balign 8
empty_idt:      .word 0
                .quad 0
gdt:            .quad 0
                .quad 0x00af9a000000ffff /* 64-bit code */
                .quad 0x00cf92000000ffff /* data */
gdt_pointer:    .word 23
                .quad gdt
idt_pointer:    .word 4095
                .quad idt

.if MODE == 3
        .set GED_L4, (GED >> 39) & 511
        .set GED_L3, (GED >> 30) & 511
        .set GED_L2, (GED >> 21) & 511
        .set LAPIC_L2, (LAPIC >> 21) & 511
        .set PAGE_2M_UNCACHED, 0x9b     /* present, writable, PWT, PCD, 2 MiB */
        .balign 4096
pml4:   .quad pdpt_low + 3
        .skip (GED_L4 - 1) * 8
        .quad pdpt_ged + 3
        .skip (511 - GED_L4) * 8
pdpt_low:
        .quad pd_low + 3
        .quad 0, 0
        .quad pd_apic + 3               /* 3-4 GiB */
        .skip 508 * 8
pdpt_ged:
        .skip GED_L3 * 8
        .quad pd_ged + 3
        .skip (511 - GED_L3) * 8
pd_low: .quad 0x83                      /* 0-2 MiB: present, writable, 2 MiB */
        .skip 511 * 8
pd_apic:
        .skip LAPIC_L2 * 8
        .quad (LAPIC & ~0x1fffff) | PAGE_2M_UNCACHED
        .skip (511 - LAPIC_L2) * 8
pd_ged: .skip GED_L2 * 8
        .quad (GED & ~0x1fffff) | PAGE_2M_UNCACHED
        .skip (511 - GED_L2) * 8
.endif

        .bss
        .balign 4096
idt:    .skip 4096
        .skip 4096
boot_stack:
"#;

/// The guests, built once per test process.
pub struct Guests {
    _dir: tempfile::TempDir,
    paths: Vec<(Mode, PathBuf)>,
}

impl Guests {
    pub fn path(&self, mode: Mode) -> &Path {
        self.paths
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, p)| p.as_path())
            .expect("every mode is built")
    }
}

/// The guest-physical address width cloud-hypervisor gives a guest by default: the host's,
/// capped at 46 bits.
fn guest_phys_bits() -> u32 {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let host = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("address sizes"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(46);
    host.min(46)
}

/// Builds the guests with `as` and `ld`. Panics with the tools' output when that fails.
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(build)
}

fn build() -> Guests {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("pvh.S");
    let script = dir.path().join("pvh.ld");
    std::fs::write(&source, SOURCE).expect("write the guest source");
    std::fs::write(&script, LINKER_SCRIPT).expect("write the linker script");
    let ged = (1u64 << guest_phys_bits()) - 0x13000;
    let mut paths = Vec::new();
    for mode in Mode::ALL {
        let object = dir.path().join(format!("{}.o", mode.name()));
        let elf = dir.path().join(format!("pvh-{}.elf", mode.name()));
        run(Command::new("as")
            .args(["--64", "--defsym"])
            .arg(format!("MODE={}", mode.number()))
            .arg("--defsym")
            .arg(format!("GED={ged:#x}"))
            .arg("-o")
            .arg(&object)
            .arg(&source));
        run(Command::new("ld")
            .args(["-m", "elf_x86_64", "-nostdlib", "--build-id=none"])
            .args(["-z", "noexecstack", "-z", "max-page-size=4096"])
            .arg("-T")
            .arg(&script)
            .arg("-o")
            .arg(&elf)
            .arg(&object));
        paths.push((mode, elf));
    }
    Guests { _dir: dir, paths }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (install binutils): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A toplevel (kernel, initrd, init, kernel-params) around the guest of `mode`, built with real
/// `nix build` so a worker can be assigned it like any VM image. The initrd and init are
/// placeholders: the guest never reads them.
pub fn toplevel(mode: Mode) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(guests().path(mode), dir.path().join("kernel")).expect("copy the guest");
    // The builder has only /bin/sh; busybox (copied in, as the other test images do) does
    // the rest.
    let flake = r#"{
  outputs = { self }: {
    packages.x86_64-linux.default = builtins.derivation {
      name = "procurator-pvh-@MODE@";
      system = "x86_64-linux";
      builder = "/bin/sh";
      kernel = ./kernel;
      tools = ./tools;
      args = [ "-c" ''
        set -e
        $tools/busybox mkdir $out
        $tools/busybox cp $kernel $out/kernel
        echo placeholder > $out/initrd
        echo '#!/bin/sh' > $out/init
        echo "procurator.pvh=@MODE@" > $out/kernel-params
      '' ];
    };
  };
}
"#
    .replace("@MODE@", mode.name());
    std::fs::create_dir(dir.path().join("tools")).expect("tools dir");
    std::fs::copy("/bin/busybox", dir.path().join("tools/busybox"))
        .expect("copy /bin/busybox (install busybox-static)");
    std::fs::write(dir.path().join("flake.nix"), flake).expect("write the flake");
    crate::vm_image::nix_build(dir.path(), "default")
}
