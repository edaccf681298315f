# Cross-compiling meshrun for Debian armhf on an x86 Debian with Debian's cross toolchain and multiarch
# libraries (`tools/dev.sh package` installs crossbuild-essential-armhf and the :armhf -dev packages).
# No sysroot: Debian's multiarch keeps armhf's headers in /usr/include/arm-linux-gnueabihf and its libraries in
# /usr/lib/arm-linux-gnueabihf, which arm-linux-gnueabihf-gcc searches by itself. Header-only libraries (PEGTL, Boost, CLI11,
# nlohmann-json) are the same for every architecture and come from /usr/include.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_LIBRARY_ARCHITECTURE arm-linux-gnueabihf)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_CXX_COMPILER arm-linux-gnueabihf-g++)
# pkg-config reads arm-linux-gnueabihf's .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/arm-linux-gnueabihf/pkgconfig:/usr/share/pkgconfig)
# Programs built here run under Debian's qemu-user-static (no binfmt registration needed).
set(CMAKE_CROSSCOMPILING_EMULATOR /usr/bin/qemu-arm-static)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE armhf)
