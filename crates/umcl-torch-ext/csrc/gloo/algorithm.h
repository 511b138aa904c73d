// Stand-in for gloo/algorithm.h; see README.md in this directory. Nothing is needed from it.
#pragma once
