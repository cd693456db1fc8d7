# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
#
# Injected by scripts/setup.sh through -DCMAKE_PROJECT_INCLUDE when building interface packages
# against the ROS 2 wheels from PyPI. Those wheels' exported *__rosidl_generator_py targets list
# include directories of the machine that built them (/opt/python/cpXY-cpXY/...). CMake refuses to
# generate with an imported target naming a non-existent include path, although nothing needs it:
# the package being built finds Python and NumPy headers itself (find_package(Python3 ...)).
# At the end of the top-level directory, drop exactly those paths; any other problem still fails.

function(_fgclip_drop_wheel_build_paths)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs "${_target}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    set(_dropped "")
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^/opt/python/cp[0-9]+-cp[0-9]+/" AND NOT EXISTS "${_dir}")
        list(APPEND _dropped "${_dir}")
      else()
        list(APPEND _kept "${_dir}")
      endif()
    endforeach()
    if(_dropped)
      set_property(TARGET "${_target}" PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
      message(STATUS "fgclip_ros: dropped wheel build-machine include paths from ${_target}")
    endif()
  endforeach()
endfunction()

if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _fgclip_drop_wheel_build_paths)
endif()
