// Stand-in for gloo/common/error.h; see README.md in this directory. Nothing is needed from it.
#pragma once
