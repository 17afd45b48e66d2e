//! A runtime spec's filter compiled once to the kernel's classic BPF and kept in the store:
//! libseccomp spends tens of milliseconds resolving and arranging a profile of some 400
//! syscalls, on every container start and every exec, for the same few hundred
//! instructions. A container of the embedded runtime, and each exec into it, loads the
//! compiled program instead.

use super::SeccompError;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use oci_spec::runtime::{Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The name of the compiled program in a container's bundle, beside `config.json`.
pub const IN_BUNDLE: &str = "seccomp.bpf";

/// crun's annotation for a compiled program (base64): it loads that instead of compiling
/// the spec's filter.
pub const CRUN_ANNOTATION: &str = "run.oci.seccomp_bpf_data";

/// One instruction's size in the kernel's `struct sock_filter`.
const INSTRUCTION: usize = 8;

/// A compiled filter: the kernel's `sock_filter` instructions, as bytes in native order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    bytes: Vec<u8>,
}

impl Program {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn instructions(&self) -> usize {
        self.bytes.len() / INSTRUCTION
    }

    /// A program as `write` left it: its digest, then its instructions. Anything else
    /// (a torn or foreign file) is `None`.
    fn decode(file: &[u8]) -> Option<Program> {
        let (digest, bytes) = file.split_at_checked(32)?;
        let whole = !bytes.is_empty()
            && bytes.len() % INSTRUCTION == 0
            && Sha256::digest(bytes).as_slice() == digest;
        whole.then(|| Program {
            bytes: bytes.to_vec(),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut file = Sha256::digest(&self.bytes).to_vec();
        file.extend_from_slice(&self.bytes);
        file
    }

    /// Reads a program written by `write` (an exec reads its container's).
    pub fn read(path: &Path) -> Result<Program, SeccompError> {
        let file = std::fs::read(path).map_err(|source| SeccompError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Program::decode(&file).ok_or_else(|| SeccompError::Invalid {
            source_name: path.display().to_string(),
            reason: "not a compiled filter".into(),
        })
    }

    pub fn write(&self, path: &Path) -> Result<(), SeccompError> {
        crate::proc::write_atomic(path, &self.encode(), crate::proc::Durability::Replace).map_err(
            |source| SeccompError::Write {
                path: path.to_path_buf(),
                source,
            },
        )
    }
}

/// Whether `filter` can be loaded as a plain program: no user notification (its listener
/// fd must reach a supervisor, which only libseccomp's load arranges) and no flags (the
/// program is loaded without any).
pub fn loadable(filter: &LinuxSeccomp) -> bool {
    let notify = |a: LinuxSeccompAction| a == LinuxSeccompAction::ScmpActNotify;
    !notify(filter.default_action())
        && filter
            .syscalls()
            .iter()
            .flatten()
            .all(|rule| !notify(rule.action()))
        && filter.flags().as_ref().is_none_or(|f| f.is_empty())
}

/// The compiled `filter`, from `cache` (a directory of the store) when an earlier start
/// compiled the same filter with this libseccomp on this kernel, else compiled now and
/// kept there. A cache that cannot be written only costs the next start the compile.
pub fn cached(cache: &Path, filter: &LinuxSeccomp) -> Result<Program, SeccompError> {
    let path = cache_path(cache, filter);
    if let Some(program) = find(&path) {
        return Ok(program);
    }
    let program = compile(filter)?;
    let kept = std::fs::create_dir_all(cache)
        .map_err(|source| SeccompError::Write {
            path: cache.to_path_buf(),
            source,
        })
        .and_then(|()| program.write(&path));
    if let Err(e) = kept {
        tracing::debug!("keeping the compiled seccomp filter: {e}");
    }
    Ok(program)
}

/// Which way `compile` reads a filter: a change to it changes this, so that no program
/// compiled the old way is loaded again.
const COMPILER: &str = concat!("skiff ", env!("CARGO_PKG_VERSION"), " compiler 2");

/// Named by everything the program depends on: the filter, how skiff translates it,
/// libseccomp's version (the compiler) and the kernel's release (which actions and flags
/// libseccomp may use).
fn cache_path(cache: &Path, filter: &LinuxSeccomp) -> PathBuf {
    let mut key = Sha256::new();
    key.update(serde_json::to_vec(filter).unwrap_or_default());
    key.update(compiler_and_host());
    cache.join(format!("{}.bpf", hex::encode(key.finalize())))
}

/// Where a compiled program is also kept under what its filter was made from: the profile's
/// bytes (`source`) and the container's bounding set, besides the compiler, the libseccomp
/// and the kernel. A start that finds its program here neither parses the profile
/// nor builds the filter (some 0.4 ms of every start, on the way to the container).
pub fn source_path(cache: &Path, source: &[u8], bounding: &HashSet<Capability>) -> PathBuf {
    let mut caps: Vec<String> = bounding.iter().map(super::cap_name).collect();
    caps.sort();
    let mut key = Sha256::new();
    key.update(b"source\0");
    key.update(source);
    key.update(b"\0");
    key.update(caps.join(",").as_bytes());
    key.update(b"\0");
    key.update(compiler_and_host());
    cache.join(format!("{}.bpf", hex::encode(key.finalize())))
}

/// A program kept at `path` by `write`, if it is there and whole.
pub fn find(path: &Path) -> Option<Program> {
    std::fs::read(path).ok().and_then(|f| Program::decode(&f))
}

/// The mark that this skiff on this kernel found the profile `source` good.
pub fn checked_mark(cache: &Path, source: &[u8]) -> PathBuf {
    let mut key = Sha256::new();
    key.update(b"checked\0");
    key.update(source);
    key.update(b"\0");
    key.update(compiler_and_host());
    cache.join(format!("{}.checked", hex::encode(key.finalize())))
}

/// What a compiled program depends on besides its filter.
fn compiler_and_host() -> Vec<u8> {
    let mut key = COMPILER.as_bytes().to_vec();
    if let Ok(v) = libseccomp::ScmpVersion::current() {
        key.extend(format!("\0libseccomp {}.{}.{}", v.major, v.minor, v.micro).bytes());
    }
    key.push(0);
    key.extend(rustix::system::uname().release().to_bytes());
    key
}

/// Compiles the filter as the OCI runtime spec means it (runc's and crun's reading: for
/// `SCMP_CMP_MASKED_EQ`, `value` is the mask and `valueTwo` the datum). Syscalls this
/// libseccomp does not know are left out, as every runtime does.
pub fn compile(filter: &LinuxSeccomp) -> Result<Program, SeccompError> {
    compile_as(filter, Layout::Tree)
}

/// How libseccomp arranges the rules of an architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One comparison after the other, in the order libseccomp chooses (its default): what
    /// the tests compare the tree with.
    #[cfg(test)]
    List,
    /// A binary tree of syscall numbers (libseccomp's optimisation level 2). The kernel
    /// loads it in less than half the time: it converts and JIT-compiles every program at
    /// `seccomp(2)`, in the container's init, and the list's long jumps take it more
    /// passes (default profile: 0.36 ms, not 0.89).
    Tree,
}

fn compile_as(filter: &LinuxSeccomp, layout: Layout) -> Result<Program, SeccompError> {
    let fail = |what: &str| {
        let what = what.to_string();
        move |source| SeccompError::Compile { what, source }
    };
    let default = action(filter.default_action(), filter.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(fail("creating the filter"))?;
    // What `seccomp(2)` is given is decided when it is loaded, not here.
    ctx.set_ctl_nnp(false)
        .map_err(fail("setting its attributes"))?;
    // A libseccomp before 2.5 has no tree; its list means the same.
    if layout == Layout::Tree
        && let Err(e) = ctx.set_ctl_optimize(2)
    {
        tracing::debug!("libseccomp arranges no binary tree: {e}");
    }
    for &a in filter.architectures().iter().flatten() {
        ctx.add_arch(arch(a))
            .map_err(fail(&format!("adding architecture {a:?}")))?;
    }
    for rule in filter.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue;
        }
        let compares: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let op = match a.op() {
                    LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
                    LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
                    LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                    LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
                    LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                    LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        return ScmpArgCompare::new(
                            a.index() as u32,
                            ScmpCompareOp::MaskedEqual(a.value()),
                            a.value_two().unwrap_or(0),
                        );
                    }
                };
                ScmpArgCompare::new(a.index() as u32, op, a.value())
            })
            .collect();
        // One comparison per argument in a rule; several on one argument become rules of
        // their own (runc's reading: any of them matches).
        let mut seen = HashSet::new();
        let separate = !rule.args().iter().flatten().all(|a| seen.insert(a.index()));
        for name in rule.names() {
            let Ok(syscall) = libseccomp::ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if compares.is_empty() {
                ctx.add_rule(act, syscall).map(drop)
            } else if separate {
                compares
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, syscall, &[*c]).map(drop))
            } else {
                ctx.add_rule_conditional(act, syscall, &compares).map(drop)
            };
            added.map_err(fail(&format!("adding the rule for {name}")))?;
        }
    }
    let memfd = rustix::fs::memfd_create("seccomp-bpf", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    ctx.export_bpf(&memfd).map_err(fail("exporting it"))?;
    let mut file = std::fs::File::from(memfd);
    let mut bytes = Vec::new();
    use std::io::{Read, Seek};
    file.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(SeccompError::Export)?;
    if bytes.is_empty() || bytes.len() % INSTRUCTION != 0 {
        return Err(SeccompError::Export(std::io::Error::other(format!(
            "libseccomp exported {} bytes, not whole instructions",
            bytes.len()
        ))));
    }
    Ok(Program { bytes })
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
    }
}

fn arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn compiled_once_then_read_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let getpid = filter(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        }));
        let first = cached(dir.path(), &getpid).unwrap();
        assert!(first.instructions() > 2, "{first:?}");
        assert_eq!(
            first,
            compile(&getpid).unwrap(),
            "compiling is deterministic"
        );
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let kept = files[0].path();
        // A torn or altered file is compiled again (and replaced), never loaded.
        for damage in [&b""[..], b"short", &[0u8; 40]] {
            std::fs::write(&kept, damage).unwrap();
            assert_eq!(cached(dir.path(), &getpid).unwrap(), first);
            assert_eq!(Program::read(&kept).unwrap(), first);
        }
        // Another filter is another program, kept under another name.
        let other = filter(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
        }));
        assert_ne!(cached(dir.path(), &other).unwrap(), first);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// The kernel's reading of a classic program, for the instructions libseccomp emits;
    /// `data` is a `struct seccomp_data`. Also whether the program read an argument.
    fn verdict(program: &Program, data: &[u8; 64]) -> (u32, bool) {
        let code: Vec<(u16, usize, usize, u32)> = program
            .as_bytes()
            .chunks(INSTRUCTION)
            .map(|i| {
                let k = u32::from_ne_bytes([i[4], i[5], i[6], i[7]]);
                (
                    u16::from_ne_bytes([i[0], i[1]]),
                    i[2].into(),
                    i[3].into(),
                    k,
                )
            })
            .collect();
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let (mut pc, mut read_args) = (0, false);
        loop {
            let (op, jt, jf, k) = code[pc];
            pc += 1;
            let jump = |taken: bool| if taken { jt } else { jf };
            match op {
                0x20 => {
                    let at = k as usize;
                    read_args |= at >= 16;
                    a = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x00 => a = k,
                0x01 => x = k,
                0x60 => a = mem[k as usize],
                0x61 => x = mem[k as usize],
                0x02 => mem[k as usize] = a,
                0x03 => mem[k as usize] = x,
                0x07 => x = a,
                0x87 => a = x,
                0x54 => a &= k,
                0x05 => pc += k as usize,
                0x15 => pc += jump(a == k),
                0x25 => pc += jump(a > k),
                0x35 => pc += jump(a >= k),
                0x45 => pc += jump(a & k != 0),
                0x1d => pc += jump(a == x),
                0x2d => pc += jump(a > x),
                0x3d => pc += jump(a >= x),
                0x4d => pc += jump(a & x != 0),
                0x06 => return (k, read_args),
                0x16 => return (a, read_args),
                other => panic!("instruction {other:#x} at {}", pc - 1),
            }
        }
    }

    #[test]
    fn the_tree_decides_every_call_as_the_list_does() {
        let host = super::super::Host {
            arch: "amd64",
            seccomp_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 1),
        };
        let caps = crate::runtime::caps::DEFAULT_CAPS.iter().copied().collect();
        let filter = super::super::builtin::profile()
            .to_spec(&caps, &host, "builtin")
            .unwrap();
        let list = compile_as(&filter, Layout::List).unwrap();
        let tree = compile_as(&filter, Layout::Tree).unwrap();
        assert_eq!(tree, compile(&filter).unwrap(), "compile arranges a tree");
        // The list compares syscall numbers for equality only; the tree bisects them
        // (`jgt`).
        let bisections = |p: &Program| {
            p.as_bytes()
                .chunks(INSTRUCTION)
                .filter(|i| u16::from_ne_bytes([i[0], i[1]]) == 0x25)
                .count()
        };
        assert!(
            bisections(&tree) > 50 && bisections(&tree) > 10 * bisections(&list),
            "tree {} against list {}",
            bisections(&tree),
            bisections(&list)
        );
        // Every value a rule compares an argument with, and its neighbours.
        let mut values = vec![0u64, u64::MAX];
        for arg in filter
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.args().iter().flatten())
        {
            for v in [Some(arg.value()), arg.value_two()].into_iter().flatten() {
                values.extend([v, v.wrapping_sub(1), v.wrapping_add(1), !v]);
            }
        }
        values.sort_unstable();
        values.dedup();
        // x86_64 (with x32's numbers), i386, and an architecture the filter does not name.
        let calls = (0..600u32)
            .flat_map(|nr| {
                [
                    (0xc000003e_u32, nr),
                    (0xc000003e, nr | 0x4000_0000),
                    (0x40000003, nr),
                ]
            })
            .chain([(0xc00000b7, 0)]);
        let (mut checked, mut with_arguments) = (0, 0);
        for (arch, nr) in calls {
            for (n, &value) in values.iter().enumerate() {
                let mut data = [0u8; 64];
                data[0..4].copy_from_slice(&nr.to_ne_bytes());
                data[4..8].copy_from_slice(&arch.to_ne_bytes());
                for arg in 0..6 {
                    let at = 16 + arg * 8;
                    data[at..at + 8].copy_from_slice(&value.to_ne_bytes());
                }
                let (decided, read_tree) = verdict(&tree, &data);
                let (want, read_list) = verdict(&list, &data);
                assert_eq!(
                    decided, want,
                    "arch {arch:#x}, syscall {nr:#x}, arguments {value:#x}"
                );
                checked += 1;
                // Other arguments matter only to a call whose rules read them.
                if !(read_tree || read_list) {
                    break;
                }
                with_arguments += usize::from(n == 0);
            }
        }
        assert!(
            checked > 1800 && with_arguments >= 4,
            "{checked} {with_arguments}"
        );
    }

    #[test]
    fn what_only_libseccomp_can_load_stays_with_it() {
        let cases = [
            (serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO"}), true),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
                false,
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "flags": ["SECCOMP_FILTER_FLAG_LOG"]}),
                false,
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": []}),
                true,
            ),
        ];
        for (json, want) in cases {
            assert_eq!(loadable(&filter(json.clone())), want, "{json}");
        }
    }

    #[test]
    fn bad_programs_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IN_BUNDLE);
        let err = Program::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("cannot read") && err.contains(IN_BUNDLE),
            "{err}"
        );
        std::fs::write(&path, [1u8; 48]).unwrap();
        let err = Program::read(&path).unwrap_err().to_string();
        assert!(err.contains("not a compiled filter"), "{err}");
    }
}
