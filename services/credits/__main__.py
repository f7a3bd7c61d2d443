from services.credits.app import wire
from shared.runtime.service import serve

serve("credits", wire, title="xo-reseller credits")
