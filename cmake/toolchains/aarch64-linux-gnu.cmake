# Cross-compiling meshrun for Debian arm64 on an x86 Debian with Debian's cross toolchain and multiarch
# libraries (`tools/dev.sh package` installs crossbuild-essential-arm64 and the :arm64 -dev packages).
# No sysroot: Debian's multiarch keeps arm64's headers in /usr/include/aarch64-linux-gnu and its libraries in
# /usr/lib/aarch64-linux-gnu, which aarch64-linux-gnu-gcc searches by itself. Header-only libraries (PEGTL, Boost, CLI11,
# nlohmann-json) are the same for every architecture and come from /usr/include.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# pkg-config reads aarch64-linux-gnu's .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
# Programs built here run under Debian's qemu-user-static (no binfmt registration needed).
set(CMAKE_CROSSCOMPILING_EMULATOR /usr/bin/qemu-aarch64-static)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
