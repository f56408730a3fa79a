// The one translation unit that compiles Asio and Beast (BOOST_*_SEPARATE_COMPILATION), so that the
// others only parse their declarations.
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
