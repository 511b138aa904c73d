// Stand-in for gloo/transport/device.h; see README.md in this directory. Only held through
// std::shared_ptr / std::unique_ptr, so declarations suffice.
#pragma once

namespace gloo {
namespace transport {

class Device;
class UnboundBuffer;

}  // namespace transport
}  // namespace gloo
