from services.reseller_space.app import ROLE, wire
from shared.runtime.service import serve

serve("reseller_space", wire, title="xo-reseller reseller space", role=ROLE)
