# `cmake --install`: a normal Unix layout (docs/install.md). Only the meshrun binary of the build's
# targets is installed: libraries, tests and benchmarks are not.
#
#   bin/meshrun                                   the program
#   share/man/man1/meshrun.1                      meshrun(1), made from --help by tools/manpage.py
#   share/bash-completion/completions/meshrun     bash completion, made from --help too
#   share/doc/meshrun/                            README.md, docs/*.md (in docs/)
#   share/meshrun/topologies/                     the example .mesh files (fleet/ with fleet.mesh)
#   MESHRUN_SYSTEMD_UNITDIR/meshrun@.service      the template unit, a node a instance
#   MESHRUN_SYSUSERSDIR/meshrun.conf              the system user `meshrun`, in group gpio
#
# /etc/meshrun/fleet.mesh, the file the unit runs, is the administrator's: not installed.
include(GNUInstallDirs)

# Where systemd looks for units and sysusers.d files. Default: what systemd's pkg-config file
# says (Debian 12: /lib/systemd/system and /usr/lib/sysusers.d, absolute, whatever the prefix,
# where debhelper puts them and lintian expects them on bookworm), else lib/systemd/system and
# lib/sysusers.d under the prefix. A relative value is taken under the prefix: give
# -DMESHRUN_SYSTEMD_UNITDIR=lib/systemd/system for an install under a prefix of one's own.
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_get_variable(meshrun_pc_unitdir systemd systemdsystemunitdir)
  pkg_get_variable(meshrun_pc_sysusersdir systemd sysusersdir)
endif()
if(NOT meshrun_pc_unitdir)
  set(meshrun_pc_unitdir lib/systemd/system)
endif()
if(NOT meshrun_pc_sysusersdir)
  set(meshrun_pc_sysusersdir lib/sysusers.d)
endif()
set(MESHRUN_SYSTEMD_UNITDIR ${meshrun_pc_unitdir} CACHE STRING
    "Where meshrun@.service is installed (relative: under the prefix)")
set(MESHRUN_SYSUSERSDIR ${meshrun_pc_sysusersdir} CACHE STRING
    "Where the sysusers.d file meshrun.conf is installed (relative: under the prefix)")

# The man page and the bash completion are made from the built binary's --help text. A cross
# build cannot run the binary it builds: it runs it under CMAKE_CROSSCOMPILING_EMULATOR when set
# (e.g. qemu-aarch64-static), or takes the text of a host build's binary, MESHRUN_MANPAGE_FROM.
set(MESHRUN_MANPAGE_FROM "" CACHE FILEPATH
    "A meshrun binary that runs on this machine, whose --help makes the man page (cross builds)")
find_package(Python3 REQUIRED COMPONENTS Interpreter)
if(MESHRUN_MANPAGE_FROM)
  set(meshrun_help_command ${MESHRUN_MANPAGE_FROM})
  set(meshrun_help_depends ${MESHRUN_MANPAGE_FROM})
elseif(CMAKE_CROSSCOMPILING AND NOT CMAKE_CROSSCOMPILING_EMULATOR)
  message(FATAL_ERROR "meshrun: a cross build makes its man page by running a meshrun binary: set "
          "CMAKE_CROSSCOMPILING_EMULATOR (e.g. qemu-aarch64-static) or MESHRUN_MANPAGE_FROM=<host meshrun>")
else()
  set(meshrun_help_command ${CMAKE_CROSSCOMPILING_EMULATOR} $<TARGET_FILE:meshrun>)
  set(meshrun_help_depends meshrun)
endif()
set(meshrun_generated ${PROJECT_BINARY_DIR}/meshrun.1 ${PROJECT_BINARY_DIR}/meshrun.bash)
add_custom_command(
  OUTPUT ${meshrun_generated}
  COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tools/manpage.py
          --version ${PROJECT_VERSION}
          --man ${PROJECT_BINARY_DIR}/meshrun.1
          --completion ${PROJECT_SOURCE_DIR}/dist/meshrun.bash.in ${PROJECT_BINARY_DIR}/meshrun.bash
          -- ${meshrun_help_command}
  DEPENDS ${meshrun_help_depends} ${PROJECT_SOURCE_DIR}/tools/manpage.py ${PROJECT_SOURCE_DIR}/dist/meshrun.bash.in
  COMMENT "Making meshrun.1 and meshrun.bash from meshrun --help"
  VERBATIM COMMAND_EXPAND_LISTS)
# The Debian packages (cmake/Packaging.cmake) install it compressed, as Debian does.
set(meshrun_manpage ${PROJECT_BINARY_DIR}/meshrun.1)
if(MESHRUN_DEBIAN_PACKAGE)
  add_custom_command(OUTPUT ${meshrun_manpage}.gz COMMAND gzip -9nkf ${meshrun_manpage}
                     DEPENDS ${meshrun_manpage} VERBATIM)
  set(meshrun_manpage ${meshrun_manpage}.gz)
  list(APPEND meshrun_generated ${meshrun_manpage})
endif()
add_custom_target(meshrun_manpage ALL DEPENDS ${meshrun_generated})

install(TARGETS meshrun RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${meshrun_manpage} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${PROJECT_BINARY_DIR}/meshrun.bash DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME meshrun)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
# docs/ kept as a directory: the README's links (docs/delivery.md) hold in the installed copy too.
install(DIRECTORY docs DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN "*.md")
install(DIRECTORY topologies/ DESTINATION ${CMAKE_INSTALL_DATADIR}/meshrun/topologies FILES_MATCHING PATTERN "*.mesh")
install(FILES dist/meshrun.sysusers DESTINATION ${MESHRUN_SYSUSERSDIR} RENAME meshrun.conf)

# The unit names the installed binary, so it is written at install time: `cmake --install
# --prefix P` then names P/bin/meshrun, whatever prefix the build was configured with.
install(CODE "
  set(MESHRUN_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  cmake_path(ABSOLUTE_PATH MESHRUN_BINDIR BASE_DIRECTORY \"\${CMAKE_INSTALL_PREFIX}\" NORMALIZE)
  configure_file(\"${PROJECT_SOURCE_DIR}/dist/meshrun@.service.in\"
                 \"${PROJECT_BINARY_DIR}/install/meshrun@.service\" @ONLY)")
install(FILES ${PROJECT_BINARY_DIR}/install/meshrun@.service DESTINATION ${MESHRUN_SYSTEMD_UNITDIR})
