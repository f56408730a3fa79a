# `cmake --install` beyond the binary and the watch page: the systemd units, the service account,
# the operator's guide; and a Debian package of it all with CPack (`cpack -G DEB` in a build
# folder, or the `package` target). docs/install.md uses both.
include(GNUInstallDirs)

install(TARGETS vodgrid RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The watch page's files where a director looks for them beside the binary (PREFIX/share/vodgrid/web;
# src/director/web.cc); hls.js with them once npm has installed it (scripts/install-deps.sh).
install(FILES web/watch.html web/watch.js web/watch.css web/README.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/vodgrid/web)
# The registry's dashboard (src/registry/dashboard.cc) beside it.
install(FILES web/dashboard/dashboard.html web/dashboard/dashboard.js web/dashboard/dashboard.css
        DESTINATION ${CMAKE_INSTALL_DATADIR}/vodgrid/web/dashboard)
install(FILES web/node_modules/hls.js/dist/hls.min.js web/node_modules/hls.js/LICENSE
        DESTINATION ${CMAKE_INSTALL_DATADIR}/vodgrid/web/node_modules/hls.js/dist OPTIONAL)

# Units and sysusers.d belong under /usr/lib whatever the prefix is named in a package (/usr).
install(DIRECTORY deploy/systemd/ DESTINATION lib/systemd/system FILES_MATCHING PATTERN "*.service")
install(FILES deploy/sysusers.d/vodgrid.conf DESTINATION lib/sysusers.d)
install(FILES README.md docs/install.md docs/operations.md docs/configuration.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME vodgrid)
set(CPACK_PACKAGE_VENDOR "vodgrid")
set(CPACK_PACKAGE_CONTACT "vodgrid maintainers <maintainers@vodgrid.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "distributed video-on-demand delivery: directors, engines, registry")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # the build's debug information stays in the build
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION video)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps names the shared libraries' packages
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/deploy/debian/postinst;${PROJECT_SOURCE_DIR}/deploy/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
