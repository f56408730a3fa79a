// Placeholder: implemented in the next commits.
#include "push/pacer.h"
