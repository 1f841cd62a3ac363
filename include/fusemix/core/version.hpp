// SPDX-License-Identifier: Apache-2.0
/// @file
/// The library's version, as numbers and as a string.
#pragma once

#define FUSEMIX_VERSION_MAJOR 0
#define FUSEMIX_VERSION_MINOR 1
#define FUSEMIX_VERSION_PATCH 0
/// One number for preprocessor comparisons: major * 10000 + minor * 100 + patch.
#define FUSEMIX_VERSION (FUSEMIX_VERSION_MAJOR * 10000 + FUSEMIX_VERSION_MINOR * 100 + FUSEMIX_VERSION_PATCH)

namespace fusemix {
/// The version as "major.minor.patch".
inline constexpr const char* version_string = "0.1.0";
}  // namespace fusemix
