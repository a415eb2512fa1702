"""Word lists the sample city is drawn from: names, nicknames and San Francisco addresses.

Weights are rough relative frequencies (US census surname and given-name tables, San Francisco's
mix of Asian, Latino, white and Black residents), good enough for realistic collisions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GivenName:
    name: str
    sex: str  # "F" or "M"
    weight: int
    nicknames: tuple[str, ...] = ()


def _names(sex: str, rows: str) -> tuple[GivenName, ...]:
    """Parse ``Name weight Nick/Nick`` lines (keeps the table below readable)."""
    names = []
    for line in rows.strip().splitlines():
        parts = line.split()
        nicknames = tuple(parts[2].split("/")) if len(parts) > 2 else ()
        names.append(GivenName(parts[0], sex, int(parts[1]), nicknames))
    return tuple(names)


GIVEN_NAMES: tuple[GivenName, ...] = _names(
    "M",
    """
    James 40 Jim/Jimmy
    John 38 Jack/Johnny
    Robert 36 Bob/Rob/Bobby
    Michael 36 Mike/Mikey
    William 32 Bill/Will/Billy
    David 32 Dave
    Richard 22 Rick/Rich
    Joseph 22 Joe/Joey
    Thomas 20 Tom/Tommy
    Charles 18 Charlie/Chuck
    Christopher 22 Chris
    Daniel 22 Dan/Danny
    Matthew 18 Matt
    Anthony 16 Tony
    Mark 12
    Donald 10 Don
    Steven 12 Steve
    Paul 12
    Andrew 14 Andy/Drew
    Joshua 12 Josh
    Kevin 14
    Brian 12
    George 10
    Edward 10 Ed/Eddie/Ted
    Ronald 8 Ron
    Timothy 10 Tim
    Jason 10
    Jeffrey 8 Jeff
    Ryan 10
    Jacob 8 Jake
    Nicholas 8 Nick
    Eric 10
    Jonathan 8 Jon
    Benjamin 8 Ben
    Samuel 8 Sam
    Gregory 6 Greg
    Alexander 10 Alex
    Patrick 8 Pat
    Raymond 6 Ray
    Henry 6 Hank/Harry
    Kenneth 8 Ken/Kenny
    Peter 6 Pete
    Vincent 6 Vince
    Jose 20 Pepe
    Luis 14
    Carlos 14
    Juan 14
    Miguel 12
    Jesus 8 Chuy
    Francisco 10 Paco/Pancho
    Antonio 10 Tony
    Manuel 8 Manny
    Rafael 6 Rafa
    Eduardo 6 Eddie/Lalo
    Roberto 6 Beto
    Wei 12
    Jun 8
    Ming 8
    Hao 6
    Minh 8
    Tuan 6
    Duc 4
    Jin 6
    Hyun 4
    Arjun 4
    Rahul 4
    Kenji 3
    Marcus 6
    Andre 6
    Darnell 4
    Malik 4
    """,
) + _names(
    "F",
    """
    Mary 36 Molly/Mae
    Patricia 22 Pat/Patty/Trish
    Jennifer 26 Jen/Jenny
    Linda 18
    Elizabeth 24 Liz/Beth/Betty/Lizzie
    Barbara 14 Barb
    Susan 16 Sue/Susie
    Jessica 18 Jess
    Sarah 18
    Karen 12
    Nancy 10
    Margaret 14 Maggie/Peggy/Meg
    Lisa 12
    Sandra 10 Sandy
    Ashley 12
    Kimberly 12 Kim
    Emily 14 Em
    Donna 8
    Michelle 12 Shelly
    Carol 8
    Amanda 10 Mandy
    Melissa 10 Missy
    Deborah 8 Debbie/Deb
    Stephanie 10 Steph
    Rebecca 10 Becky
    Laura 10
    Cynthia 8 Cindy
    Kathleen 8 Kathy/Kate
    Amy 8
    Angela 8 Angie
    Anna 8
    Olivia 8 Liv
    Sophia 8 Sophie
    Isabella 6 Bella
    Christine 8 Tina/Chris
    Katherine 10 Kate/Katie/Kathy
    Victoria 6 Vicky/Tori
    Samantha 6 Sam
    Dorothy 4 Dot/Dottie
    Theresa 4 Terry/Tess
    Judith 4 Judy
    Helen 6
    Grace 6
    Maria 22
    Guadalupe 8 Lupe
    Rosa 8 Rosie
    Ana 8
    Carmen 8
    Veronica 6 Ronnie
    Alejandra 6 Ale
    Mei 10
    Li 8
    Ying 6
    Xiu 4
    Linh 6
    Mai 6
    Hoa 4
    Minji 4
    Priya 4
    Anjali 3
    Yuki 3
    Aisha 4
    Keisha 4
    Jasmine 6 Jas
    """,
)


def _weighted(rows: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for line in rows.strip().splitlines():
        name, weight = line.strip().rsplit(" ", 1)
        pairs.append((name, int(weight)))
    return tuple(pairs)


# Some surnames carry punctuation or spaces that agencies' systems record differently
# (O'Brien / OBrien, Dela Cruz / Delacruz): a classic source of linkage misses.
FAMILY_NAMES: tuple[tuple[str, int], ...] = _weighted(
    """
    Smith 30
    Johnson 24
    Williams 20
    Brown 20
    Jones 18
    Garcia 30
    Miller 14
    Davis 14
    Rodriguez 22
    Martinez 22
    Hernandez 22
    Lopez 20
    Gonzalez 18
    Wilson 10
    Anderson 10
    Thomas 10
    Taylor 10
    Moore 8
    Jackson 10
    Martin 8
    Lee 30
    Perez 12
    Thompson 8
    White 8
    Harris 8
    Sanchez 12
    Clark 6
    Ramirez 12
    Lewis 6
    Robinson 6
    Walker 6
    Young 6
    Allen 6
    King 6
    Wright 6
    Scott 6
    Torres 10
    Nguyen 26
    Hill 6
    Flores 10
    Green 6
    Adams 6
    Nelson 6
    Baker 6
    Rivera 10
    Campbell 6
    Mitchell 6
    Carter 6
    Chen 30
    Wong 30
    Li 18
    Wang 18
    Liu 16
    Zhang 14
    Huang 14
    Lin 14
    Chan 18
    Yang 10
    Wu 12
    Tran 16
    Le 12
    Pham 10
    Kim 14
    Park 10
    Choi 6
    Patel 10
    Shah 4
    Singh 6
    Kumar 4
    Tanaka 4
    Nakamura 4
    Cohen 4
    Murphy 6
    Sullivan 6
    Kelly 6
    Rossi 3
    Ng 12
    Leung 10
    Cheung 8
    Lam 10
    Ho 10
    Chu 8
    Fong 6
    Mendoza 8
    Castillo 6
    Reyes 8
    Morales 6
    Ortiz 6
    Gutierrez 6
    Chavez 6
    Ramos 6
    Santos 6
    Cruz 8
    Villanueva 4
    Aquino 4
    O'Brien 5
    O'Connor 4
    McCarthy 4
    Dela Cruz 5
    De Leon 4
    St. John 2
    Garcia Lopez 2
    Smith-Jones 1
    """
)


@dataclass(frozen=True)
class ZipArea:
    zip: str
    neighbourhood: str
    police_district: str
    population: int  # thousands, roughly (2020 census ZCTA)
    streets: tuple[str, ...]


ZIP_AREAS: tuple[ZipArea, ...] = (
    ZipArea(
        "94102",
        "Tenderloin",
        "Tenderloin",
        32,
        ("Eddy St", "Ellis St", "Turk St", "Golden Gate Ave", "Larkin St", "Hyde St"),
    ),
    ZipArea(
        "94103",
        "South of Market",
        "Southern",
        30,
        ("Mission St", "Howard St", "Folsom St", "Harrison St", "Natoma St", "Minna St"),
    ),
    ZipArea("94105", "Rincon Hill", "Southern", 10, ("Beale St", "Main St", "Spear St")),
    ZipArea(
        "94107",
        "Potrero Hill",
        "Bayview",
        30,
        ("Mariposa St", "De Haro St", "Rhode Island St", "Connecticut St", "3rd St"),
    ),
    ZipArea(
        "94108",
        "Chinatown",
        "Central",
        14,
        ("Stockton St", "Grant Ave", "Clay St", "Sacramento St", "Jackson St"),
    ),
    ZipArea(
        "94109",
        "Nob Hill",
        "Northern",
        56,
        ("Polk St", "Larkin St", "Pine St", "Bush St", "Sutter St", "Post St", "Jones St"),
    ),
    ZipArea(
        "94110",
        "Mission",
        "Mission",
        70,
        ("Mission St", "Valencia St", "Cesar Chavez St", "Folsom St", "Bryant St", "Guerrero St"),
    ),
    ZipArea(
        "94112",
        "Excelsior",
        "Ingleside",
        80,
        ("Mission St", "Geneva Ave", "Ocean Ave", "Persia Ave", "Brazil St", "Silver Ave"),
    ),
    ZipArea(
        "94114",
        "Castro",
        "Mission",
        35,
        ("Castro St", "Noe St", "Diamond St", "Sanchez St", "Douglass St"),
    ),
    ZipArea(
        "94115",
        "Western Addition",
        "Northern",
        35,
        ("Fillmore St", "Divisadero St", "Geary Blvd", "Webster St", "Steiner St"),
    ),
    ZipArea(
        "94116",
        "Parkside",
        "Taraval",
        47,
        ("Taraval St", "Sunset Blvd", "Ulloa St", "Vicente St", "30th Ave", "Santiago St"),
    ),
    ZipArea(
        "94117",
        "Haight-Ashbury",
        "Park",
        40,
        ("Haight St", "Oak St", "Fell St", "Masonic Ave", "Page St", "Ashbury St"),
    ),
    ZipArea(
        "94118",
        "Inner Richmond",
        "Richmond",
        40,
        ("Clement St", "Geary Blvd", "California St", "Arguello Blvd", "Anza St"),
    ),
    ZipArea(
        "94121",
        "Outer Richmond",
        "Richmond",
        43,
        ("Balboa St", "Cabrillo St", "32nd Ave", "38th Ave", "Fulton St"),
    ),
    ZipArea(
        "94122",
        "Sunset",
        "Taraval",
        60,
        ("Irving St", "Judah St", "Noriega St", "Lincoln Way", "19th Ave", "25th Ave"),
    ),
    ZipArea("94123", "Marina", "Northern", 25, ("Chestnut St", "Lombard St", "Union St", "Bay St")),
    ZipArea(
        "94124",
        "Bayview",
        "Bayview",
        36,
        ("3rd St", "Palou Ave", "Oakdale Ave", "Jerrold Ave", "Quesada Ave", "Newcomb Ave"),
    ),
    ZipArea(
        "94127",
        "West Portal",
        "Taraval",
        20,
        ("Portola Dr", "Monterey Blvd", "Claremont Blvd", "Ulloa St"),
    ),
    ZipArea(
        "94131",
        "Glen Park",
        "Ingleside",
        28,
        ("Diamond St", "Chenery St", "Bosworth St", "Diamond Heights Blvd"),
    ),
    ZipArea(
        "94132",
        "Lakeshore",
        "Taraval",
        30,
        ("Lake Merced Blvd", "Font Blvd", "Junipero Serra Blvd", "Holloway Ave"),
    ),
    ZipArea(
        "94133",
        "North Beach",
        "Central",
        26,
        ("Columbus Ave", "Broadway", "Stockton St", "Union St", "Greenwich St"),
    ),
    ZipArea(
        "94134",
        "Visitacion Valley",
        "Ingleside",
        42,
        ("Leland Ave", "Sunnydale Ave", "Bayshore Blvd", "Geneva Ave", "Visitacion Ave"),
    ),
    ZipArea("94158", "Mission Bay", "Southern", 8, ("4th St", "Berry St", "Channel St")),
)

# How agencies' systems spell out what the address register abbreviates.
STREET_SUFFIXES: dict[str, str] = {
    "St": "Street",
    "Ave": "Avenue",
    "Blvd": "Boulevard",
    "Dr": "Drive",
    "Way": "Way",
    "Broadway": "Broadway",
}

# Hospitals that receive EMS transports in San Francisco.
HOSPITALS: tuple[str, ...] = (
    "Zuckerberg San Francisco General",
    "UCSF Parnassus",
    "CPMC Van Ness",
    "Kaiser San Francisco",
    "St. Mary's Medical Center",
    "Saint Francis Memorial",
    "CPMC Mission Bernal",
)

# Domains reserved for documentation (RFC 2606), so no generated email address is anyone's.
EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net")
