#!/usr/bin/env python3
"""The GPU architectures a framework wheel's CUDA code was built for, read from the wheel itself.

  python3 bench/fatbin-archs.py WHEEL...

Not a test and not run by CI: it reads real wheels (hundreds of MiB) that a benchmark's cache
holds. For each shared library in the wheel it finds the CUDA fat binaries (`.nv_fatbin`
contents: a 16-byte header with magic 0xBA55ED50, then entries whose header says their kind,
1 = PTX, 2 = ELF machine code, and their `sm` architecture at byte 28), and prints, per wheel,
the architectures with machine code (SASS) and those with PTX. A GPU of compute capability X.Y runs
the code when there is SASS for X.Z with Z <= Y, or PTX for an architecture <= X.Y (compiled by
the driver at load). This is what `cuobjdump --list-elf/--list-ptx` would say, without CUDA.
"""
import struct, sys, zipfile

MAGIC = 0xBA55ED50


def containers(data):
    i = data.find(struct.pack("<I", MAGIC))
    while i != -1:
        if i + 16 <= len(data):
            _, version, header_size, fat_size = struct.unpack_from("<IHHQ", data, i)
            if version == 1 and header_size == 16 and fat_size < len(data):
                yield i + 16, i + 16 + fat_size
                i = data.find(struct.pack("<I", MAGIC), i + 16 + fat_size)
                continue
        i = data.find(struct.pack("<I", MAGIC), i + 4)


def entries(data, start, end):
    at = start
    while at + 32 <= end:
        kind, _, header_size, size = struct.unpack_from("<HHIQ", data, at)
        (arch,) = struct.unpack_from("<I", data, at + 28)
        if kind not in (1, 2) or header_size < 32 or header_size > 1024:
            return
        yield kind, arch
        at += header_size + size


def main():
    for wheel in sys.argv[1:]:
        sass, ptx, libs = set(), set(), 0
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                name = info.filename
                if ".so" not in name.rsplit("/", 1)[-1]:
                    continue
                data = z.read(info)
                found = False
                for start, end in containers(data):
                    for kind, arch in entries(data, start, end):
                        (sass if kind == 2 else ptx).add(arch)
                        found = True
                libs += found
        fmt = lambda s: " ".join(f"sm_{a}" for a in sorted(s)) or "none"
        print(f"{wheel.rsplit('/', 1)[-1]}: {libs} libraries with CUDA code")
        print(f"  SASS: {fmt(sass)}")
        print(f"  PTX:  {fmt(ptx)}")


if __name__ == "__main__":
    main()
