# CMake toolchain for `cargo check -p tandem-mobile --target aarch64-linux-android` on a machine
# without the Android NDK: the C dependencies (libopus) are compiled for aarch64 with Debian's
# cross gcc (package gcc-aarch64-linux-gnu) against glibc headers. That is enough to type-check
# the Rust code; an APK is built with the NDK instead (see ARCHITECTURE-mobile.md).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
