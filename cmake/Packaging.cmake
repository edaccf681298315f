# meshrun's Debian packages, through CPack's DEB generator: what `cmake --install` lays out
# (cmake/Install.cmake), under /usr, with the binary stripped, its dependencies read from the shared
# libraries it links (dpkg-shlibdeps), and the maintainer scripts of packaging/. `tools/dev.sh
# package` builds them for amd64, arm64 and armhf (cross, with cmake/toolchains/), and `cpack -G DEB` in a
# build directory builds one for that build's architecture.
include(GNUInstallDirs)

# What Debian asks of every package: its copyright and its changelog, compressed; the man page
# compressed (cmake/Install.cmake). Off for a plain `cmake --install`.
if(MESHRUN_DEBIAN_PACKAGE)
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
  configure_file(${PROJECT_SOURCE_DIR}/packaging/changelog.in ${PROJECT_BINARY_DIR}/packaging/changelog.Debian @ONLY)
  execute_process(COMMAND gzip -9nf ${PROJECT_BINARY_DIR}/packaging/changelog.Debian COMMAND_ERROR_IS_FATAL ANY)
  install(FILES ${PROJECT_BINARY_DIR}/packaging/changelog.Debian.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides
          RENAME meshrun)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME meshrun)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "meshrun maintainers <maintainers@meshrun.dev>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "wire GPIO devices into a fleet with one text file")
# The synopsis is CPACK_PACKAGE_DESCRIPTION_SUMMARY; this, the extended description (lines under 80).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "A .mesh file declares the nodes of a fleet of Raspberry Pis and similar boards:
their hosts and ports, the GPIO lines each node drives or watches, timers, and
reactive rules. meshrun checks the file like a compiler, runs each node as a
websocket endpoint on real GPIO lines (libgpiod) or simulated ones, runs a
whole fleet locally, and tests scenarios on virtual time. The unit
meshrun@.service runs one node of /etc/meshrun/fleet.mesh at boot.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)   # meshrun_VERSION-1_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION electronics)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The postinst makes the user with systemd-sysusers.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd | systemd-standalone-sysusers")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/postinst ${PROJECT_SOURCE_DIR}/packaging/prerm ${PROJECT_SOURCE_DIR}/packaging/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES ON)
include(CPack)
