"""Kernel code sizes from a cubin (an ELF file): the bytes of each ``.text.<kernel>`` section,
read with ``struct`` (no cuobjdump on the CI machine). From sm_70 a SASS instruction is 16
bytes."""
import struct

INSTRUCTION_BYTES = 16


def text_sections(cubin: bytes) -> dict:
    """{kernel name: code bytes} of the ELF64 cubin's ``.text.<kernel>`` sections."""
    if cubin[:4] != b'\x7fELF' or cubin[4] != 2:
        raise ValueError('not an ELF64 cubin')
    shoff, = struct.unpack_from('<Q', cubin, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', cubin, 0x3A)

    def header(i):  # (name offset, file offset, size) of section i
        base = shoff + i * shentsize
        name, = struct.unpack_from('<I', cubin, base)
        offset, size = struct.unpack_from('<QQ', cubin, base + 0x18)
        return name, offset, size

    _, strings, _ = header(shstrndx)
    sizes = {}
    for i in range(shnum):
        name_at, _, size = header(i)
        end = cubin.index(b'\0', strings + name_at)
        name = cubin[strings + name_at:end].decode()
        if name.startswith('.text.'):
            sizes[name[len('.text.'):]] = size
    return sizes


def instructions(cubin: bytes) -> dict:
    """{kernel name: SASS instructions} (sm_70+)."""
    return {k: v // INSTRUCTION_BYTES for k, v in text_sections(cubin).items()}
